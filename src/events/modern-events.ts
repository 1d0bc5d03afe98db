/**
 * ModernEvents turns what the agent emits (the 2018 event names and shapes
 * of docs/wire-contract.rst, "Events", emitted by the kernel service and the
 * heartbeat) into the events a 24.09 manager reads from its Redis stream
 * (section 7; `common/events.py` at 24.09.0): `agent_started`,
 * `agent_heartbeat [agent_info]`, `agent_terminated [reason]`, and for
 * kernels of modern sessions `kernel_preparing`, `kernel_creating`,
 * `kernel_started [kernel_id, session_id, reason, creation_info]`
 * (creation_info from the modern RPC layer), `kernel_terminating` and
 * `kernel_terminated [kernel_id, session_id, reason, exit_code]`.
 * Kernels that 2018 managers created are not the modern manager's and are
 * left out.
 */
import { deflateSync } from 'node:zlib';
import { uncompressSync } from 'snappy';
import type { Codec } from '../wire/codec.js';
import type { AgentInfo } from './agent-info.js';
import type { EventSink } from './sink.js';
import type { ModernEventName } from './catalogue.js';

/** The agent's reasons as 24.09's KernelLifecycleEventReason values (the others are already such values). */
const REASONS: Readonly<Record<string, string>> = {
  'agent-reset': 'agent-termination',
  shutdown: 'agent-termination',
  'node-drain': 'agent-termination', // a drain's deadline (src/services/drain.ts): 24.09 has no reason of its own for it
};

/** What the translator needs to know about modern sessions. */
export interface ModernSessions {
  /** The session of a kernel a modern manager created, or null. */
  sessionOf(kernelId: string): string | null;
  /** Whether the next kernel_terminated of a kernel is not to be emitted (and forgets it). */
  takeSuppressed(kernelId: string): boolean;
  /** The kernel's terminated: forget its session. */
  forget(kernelId: string): void;
}

/** The parts of a modern agent_info that are not in the 2018 one. */
export interface ModernIdentity {
  scalingGroup: string;
  publicHost: string;
  version: string;
  architecture: string;
  publicKey: string | null;
  /** Where modern managers connect (the CURVE socket when there is one). */
  addr: string;
  /** The 2018 list names images by lang (`python:3-debian`); the modern one by reference: this prefix goes before. */
  imagePrefix: string;
}

export class ModernEvents {
  constructor(
    private readonly sink: EventSink,
    private readonly sessions: ModernSessions,
    private readonly codec: Codec,
    private readonly identity: () => ModernIdentity,
  ) {}

  /** Emits a modern event as it is (for the RPC layer: kernel_started with creation_info, sync's kernel_terminated). */
  emitModern(name: ModernEventName, args: unknown[]): void {
    this.out(name, args);
  }

  private out(name: ModernEventName, args: unknown[]): void {
    this.sink.emit(name, args);
  }

  /** Takes an event as the agent emits it for 2018 managers and emits its modern form, if it has one. */
  fromAgent(name: string, args: unknown[]): void {
    switch (name) {
      case 'instance_started':
        this.out('agent_started', ['']);
        return;
      case 'instance_terminated':
        this.out('agent_terminated', [REASONS[String(args[0])] ?? String(args[0] ?? '')]);
        return;
      case 'instance_heartbeat':
        this.out('agent_heartbeat', [this.agentInfo(args[0] as AgentInfo)]);
        return;
      case 'kernel_creating': {
        const id = String(args[0]);
        const sid = this.sessions.sessionOf(id);
        if (!sid) return;
        this.out('kernel_preparing', [id, sid, '', {}]);
        this.out('kernel_creating', [id, sid, '', {}]);
        return;
      }
      case 'kernel_terminated': {
        const [id, reason] = [String(args[0]), String(args[1] ?? 'unknown')];
        const sid = this.sessions.sessionOf(id);
        if (!sid) return;
        if (reason === 'restarting') return; // the kernel lives on in a new container
        const suppressed = this.sessions.takeSuppressed(id);
        this.sessions.forget(id);
        if (suppressed) return;
        const modernReason = REASONS[reason] ?? reason;
        this.out('kernel_terminating', [id, sid, modernReason]);
        this.out('kernel_terminated', [id, sid, modernReason, -1]);
        return;
      }
      default:
        return; // kernel_started comes from the RPC layer, with creation_info; the rest has no modern form
    }
  }

  /** The modern agent_info from the 2018 one: slots as `[type, "amount"]`, images as zlib of msgpack `[[repo:tag, digest]]`. */
  private agentInfo(info: AgentInfo): Record<string, unknown> {
    const id = this.identity();
    let images: unknown[] = [];
    try {
      const list = this.codec.decode(uncompressSync(info.images, { asBuffer: true }) as Buffer);
      if (Array.isArray(list)) images = list.map((i) => (Array.isArray(i) && typeof i[0] === 'string' ? [id.imagePrefix + i[0], i[1]] : i));
    } catch {
      images = [];
    }
    return {
      ip: info.ip,
      region: info.region,
      scaling_group: id.scalingGroup,
      addr: id.addr,
      public_key: id.publicKey,
      public_host: id.publicHost,
      resource_slots: { cpu: ['count', String(info.cpu_slots)], mem: ['bytes', String(info.mem_slots * 1024 * 1024)] },
      version: id.version,
      compute_plugins: {},
      images: deflateSync(this.codec.encode(images)),
      'images.opts': { compression: 'zlib' },
      architecture: id.architecture,
      auto_terminate_abusing_kernel: false,
    };
  }
}
