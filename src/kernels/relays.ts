/**
 * KernelRelays keeps the relays of the kernels (src/relay): one runner relay
 * and one terminal relay per kernel, opened on first use and closed with the
 * kernel's container. KernelService owns it; it knows records, not frames.
 */
import type { Logger } from '../log.js';
import { KernelRelay } from '../relay/kernel-relay.js';
import type { Run } from '../relay/runs.js';
import { TerminalRelay } from '../relay/terminal.js';
import { changedOutputFiles } from '../scratch/home-ops.js';
import { type ImageTraits } from '../containers/image-traits.js';

/** What a relay is opened from. */
export interface RelayTarget {
  id: string;
  ports: number[];
  scratchDir: string;
  traits: ImageTraits;
  containerId: string;
  pid: number | null;
  spec: { memMiB: number };
  /** Re-adopted from a previous agent: the relay takes over the runs its runner holds. */
  adopted?: boolean;
}

export class KernelRelays {
  private readonly relays = new Map<string, KernelRelay>();
  private readonly terminals = new Map<string, TerminalRelay>();
  /** Runs a closed relay ended (a restart) whose ending was not collected yet: the kernel's next relay answers them. */
  private readonly leftovers = new Map<string, Run[]>();

  constructor(
    private readonly o: {
      kernelHost: string;
      log: Logger;
      /** The exec_timeout setting (0: the image's label). */
      execTimeoutSec(): number;
      /** A run exceeded the exec timeout: the kernel is to be destroyed. */
      onExecTimeout(id: string, log: Logger): void;
      /** A kernel's runner restarted; `line` says how the previous one ended. */
      onRunnerRestart(id: string, line: string): void;
      /** A kernel's OOM kills so far (null: unknown). */
      oomKills(containerId: string, pid: number | null): Promise<number | null>;
    },
  ) {}

  /** The relay to a kernel's runner, opened on first use. */
  relay(rec: RelayTarget): KernelRelay {
    let relay = this.relays.get(rec.id);
    if (!relay) {
      const inherited = this.leftovers.get(rec.id);
      this.leftovers.delete(rec.id);
      relay = new KernelRelay({
        host: this.o.kernelHost,
        replInPort: rec.ports[0]!,
        replOutPort: rec.ports[1]!,
        ...this.options(rec),
        takeOver: rec.adopted === true,
        inherited,
      });
      this.relays.set(rec.id, relay);
    }
    return relay;
  }

  /**
   * Resolves once a new container's runner answers `%ping`, through a relay
   * of its own that is closed again: the kernel's own relay opens on first
   * use (and answers the runs a restart ended), and an idle kernel holds no
   * connection.
   */
  async waitReady(rec: RelayTarget, timeoutMs: number): Promise<void> {
    const probe = new KernelRelay({ host: this.o.kernelHost, replInPort: rec.ports[0]!, replOutPort: rec.ports[1]!, ...this.options(rec) });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        probe.ping(timeoutMs),
        new Promise(
          (_, reject) =>
            (timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000} s (runner_ready_timeout)`)), timeoutMs)),
        ),
      ]);
    } finally {
      clearTimeout(timer);
      probe.close(); // at once, also on a timeout: the container goes, and Docker may give its ports to another
    }
  }

  /** Makes an open relay to a kernel's runner (a claimed pooled container's) the kernel's. */
  adopt(rec: RelayTarget, relay: KernelRelay): void {
    this.relays.get(rec.id)?.close();
    relay.rebind(this.options(rec));
    this.relays.set(rec.id, relay);
  }

  private options(rec: RelayTarget) {
    const log = this.o.log.child({ kernelId: rec.id, component: 'relay' });
    return {
      log,
      execTimeoutSec: this.o.execTimeoutSec() || rec.traits.execTimeoutSec,
      outputFiles: (since: number) => changedOutputFiles(rec.scratchDir, since),
      onExecTimeout: () => this.o.onExecTimeout(rec.id, log),
      onRunnerRestart: (line: string) => this.o.onRunnerRestart(rec.id, line),
      oomKills: () => this.o.oomKills(rec.containerId, rec.pid),
      memLimitMiB: rec.spec.memMiB,
    };
  }

  /** The relay to a kernel's terminal, opened once the runner answers. */
  async terminal(rec: RelayTarget): Promise<TerminalRelay> {
    let t = this.terminals.get(rec.id);
    if (t?.failure) {
      t.close(); // its read loop failed (logged): a new relay reconnects
      this.terminals.delete(rec.id);
      t = undefined;
    }
    if (!t) {
      // Docker's proxy accepts connections before the runner listens, and a PUB drops what it sends meanwhile.
      await this.relay(rec).ping();
      t = this.terminals.get(rec.id);
      if (t) return t;
      t = new TerminalRelay(this.o.kernelHost, rec.ports[2]!, rec.ports[3]!, this.o.log.child({ kernelId: rec.id, component: 'terminal' }));
      this.terminals.set(rec.id, t);
    }
    return t;
  }

  /**
   * Closes both relays of a kernel. With a reason, the runs not finished end
   * with it (terminated, or not started); with `keep` (a restart: the kernel
   * lives on), the endings not collected yet stay for its next relay.
   */
  close(id: string, reason?: string, keep = false): void {
    const left = this.relays.get(id)?.close(reason) ?? [];
    if (keep && left.length > 0) this.leftovers.set(id, left);
    else this.leftovers.delete(id);
    this.relays.delete(id);
    this.terminals.get(id)?.close();
    this.terminals.delete(id);
  }

  /** The agent is stopping: calls waiting on runs answer now (`continued`). */
  drainAll(): void {
    for (const relay of this.relays.values()) relay.drain();
  }

  /**
   * Closes every relay (the agent stops; its kernels keep running). A relay
   * left open would keep reconnecting to the kernel's published ports, and
   * once Docker hands those ports to another container it would take a share
   * of that runner's output.
   */
  closeAll(): void {
    this.leftovers.clear();
    for (const id of new Set([...this.relays.keys(), ...this.terminals.keys()])) this.close(id);
  }
}
