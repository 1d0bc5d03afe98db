/**
 * The handlers of the modern method table (src/rpc/modern-methods.ts): each
 * maps a 24.09 call shape onto the same kernel, relay and file services the
 * 2018 table uses, so there is one implementation of each operation. It
 * keeps which session each kernel belongs to (modern events name both), and
 * tells the modern event sink (src/events/modern-events.ts) what 24.09
 * reads from it.
 */
import type { Logger } from '../log.js';
import { AgentError, KernelCreationError, KernelNotFoundError } from '../errors.js';
import { implement, notImplemented, type Binding } from '../rpc/dispatcher.js';
import { define } from '../rpc/methods.js';
import { type KernelInfo } from '../rpc/results.js';
import { modernMethods, modernNotServed, type HardwareMetadata, type ModernKernelResult } from '../rpc/modern-methods.js';
import type { KernelService } from '../kernels/service.js';
import { KernelApps } from '../kernels/apps.js';
import { parseModernKernelConfig, type ModernKernelExtras } from '../kernels/modern-spec.js';
import { clusterHostnameOf, keepClusterEnviron, readClusterInfo, withClusterEnviron } from '../kernels/modern-cluster.js';
import { newSshKeypair } from '../kernels/cluster-ssh.js';
import type { SessionNetworks } from '../containers/session-network.js';
import type { SessionOverlays } from '../containers/session-overlay.js';
import { singleFileOfTar } from '../kernels/tar-single.js';
import type { ModernEventName } from '../events/catalogue.js';

/** A kernel created by a modern manager: its session and what `creation_info` reports. */
export interface ModernKernel {
  sessionId: string;
  extras: ModernKernelExtras;
  /** Null while the kernel is being created. */
  info: KernelInfo | null;
}

/** What the modern handlers need from the agent. */
export interface ModernRpcDeps {
  kernels: KernelService;
  log: Logger;
  version: string;
  /** The agent's `tcp://host:port` as the manager reaches it. */
  agentAddr: string;
  /** Emits a modern event (to the Redis stream when one is set; a no-op otherwise). */
  emitModern(name: ModernEventName, args: unknown[]): void;
  /** Drains and stops the agent as SIGTERM does; called after the reply of shutdown_agent went out. */
  requestStop(reason: string): void;
  /** assign_port / release_port over the host port range (src/ports/ranged-docker.ts). */
  ports: { assign(): Promise<number>; release(port: number): boolean };
  /** create_local_network / destroy_local_network, and the check that a session's kernels join a network of this agent's making. */
  sessionNetworks: Pick<SessionNetworks, 'create' | 'destroy' | 'check'>;
  /** The checks that a multi-node session's kernels join the overlay network of a session, before their create and after their start. */
  sessionOverlays: Pick<SessionOverlays, 'check' | 'verify'>;
  /** The CPU cores and memory the node has, for gather_hwinfo. */
  resources(): { cpuSlots: number; memSlotsMiB: number };
}

/** The `creation_info` of kernel_started as 24.09's manager reads it (the create_kernels result of that kernel). */
export function creationInfo(k: ModernKernel & { info: KernelInfo }, agentAddr: string): ModernKernelResult {
  const i = k.info;
  return {
    id: i.id,
    kernel_host: i.kernel_host,
    repl_in_port: i.repl_in_port,
    repl_out_port: i.repl_out_port,
    stdin_port: i.stdin_port,
    stdout_port: i.stdout_port,
    service_ports: modernServicePorts(i.service_ports),
    container_id: i.container_id,
    resource_spec: { cpu_set: i.cpu_set, slots: {}, mounts: [], allocations: {} },
    attached_devices: {},
    agent_addr: k.extras.agentAddr || agentAddr,
    scaling_group: k.extras.scalingGroup,
  };
}

/** Service ports as 24.09 reads them: container and host ports as lists. */
export function modernServicePorts(ports: KernelInfo['service_ports'] | undefined): unknown[] {
  return (ports ?? []).map((p) => ({
    name: p.name,
    protocol: p.protocol,
    container_ports: [p.container_port],
    host_ports: [p.host_port],
    is_inference: false,
  }));
}

function defaultExtras(): ModernKernelExtras {
  return { clusterRole: 'main', clusterIdx: 1, clusterHostname: 'main1', scalingGroup: 'default', agentAddr: '', ignored: [] };
}

/** ModernRpc owns the kernel -> session map and gives the bindings of the modern table. */
export class ModernRpc {
  /** Kernels created by modern managers, by kernel id. */
  readonly sessions = new Map<string, ModernKernel>();
  /** Kernels whose next kernel_terminated is not to be emitted (destroy_kernel with suppress_events). */
  readonly suppressed = new Set<string>();

  constructor(private readonly deps: ModernRpcDeps) {}

  /** The session of a kernel, when a modern manager created it. */
  sessionOf(kernelId: string): string | null {
    return this.sessions.get(kernelId)?.sessionId ?? null;
  }

  /** Whether the kernel's next kernel_terminated is suppressed (destroy_kernel with suppress_events, sync); forgets that. */
  takeSuppressed(kernelId: string): boolean {
    return this.suppressed.delete(kernelId);
  }

  /** Forgets a terminated kernel. */
  forget(kernelId: string): void {
    this.sessions.delete(kernelId);
  }

  bindings(): Binding[] {
    const k = this.deps.kernels;
    const apps = new KernelApps(k);
    const m = modernMethods;
    return [
      implement(m.ping, (msg) => msg),
      implement(m.health, () => ({ status: 'ok', version: this.deps.version, kernels: k.list().length })),
      implement(m.gather_hwinfo, () => {
        const r = this.deps.resources();
        const healthy = (metadata: Record<string, string>): HardwareMetadata => ({ status: 'healthy', status_info: null, metadata });
        return { cpu: healthy({ cores: String(r.cpuSlots) }), mem: healthy({ bytes: String(r.memSlotsMiB * 1024 * 1024) }) };
      }),
      implement(m.ping_kernel, async (id) => ({ rtt: await apps.ping(id) })),
      implement(m.start_service, (id, service, opts) => apps.start(id, service, opts)),
      implement(m.shutdown_service, (id, service) => apps.shutdown(id, service)),
      implement(m.sync_kernel_registry, (pairs) => this.sync(pairs)),
      implement(m.create_kernels, (sid, ids, configs, cluster, refs) => this.createKernels(sid, ids, configs, cluster, refs)),
      implement(m.create_local_network, async (name) => {
        await this.deps.sessionNetworks.create(name);
        return null;
      }),
      implement(m.destroy_local_network, async (name) => {
        await this.deps.sessionNetworks.destroy(name);
        return null;
      }),
      implement(m.destroy_kernel, async (id, sid, reason, suppress) => {
        if (!k.list().some((r) => r.id === id)) throw new KernelNotFoundError(id);
        if (suppress) this.suppressed.add(id);
        if (!this.sessions.has(id)) this.sessions.set(id, { sessionId: sid, extras: defaultExtras(), info: null });
        return k.destroy(id, reason ?? 'user-requested');
      }),
      implement(m.interrupt_kernel, async (id) => {
        (await k.relay(id)).interrupt();
        return null;
      }),
      implement(m.get_completions, async (id, text, opts) => ({
        status: 'finished',
        completions: await (await k.relay(id)).complete(text, opts),
      })),
      implement(m.get_logs, async (id) => ({ logs: await k.logs(id) })),
      implement(m.restart_kernel, async (_sid, id, image, config) => {
        // a full creation config (image or resource_slots) is read like create_kernels'; else the kernel keeps its spec
        const full = config.image !== undefined || config.resource_slots !== undefined;
        const info = await k.restart(id, config, (s, current) =>
          full ? keepClusterEnviron(current, parseModernKernelConfig(config, image, s).spec) : { ...current },
        );
        return { ...info, service_ports: modernServicePorts(info.service_ports) };
      }),
      implement(m.execute, async (_sid, id, apiVersion, runId, mode, code, opts, flushTimeout) =>
        (await k.relay(id)).execute({ apiVersion: Math.min(apiVersion, 3), runId, mode, code, opts, flushTimeoutMs: flushTimeout * 1000 }),
      ),
      implement(m.upload_file, async (id, filename, data) => {
        await (await k.files(id)).upload(filename, data);
        return null;
      }),
      implement(m.download_file, async (id, filepath) => (await k.files(id)).download(filepath)),
      implement(m.download_single, async (id, filepath) => singleFileOfTar(await (await k.files(id)).download(filepath), filepath)),
      implement(m.list_files, async (id, dir) => (await k.files(id)).list(dir)),
      implement(m.reset_agent, async () => {
        await k.reset();
        return null;
      }),
      implement(m.assign_port, async () => {
        const port = await this.deps.ports.assign();
        this.deps.log.info('assign_port: a host port is held for the manager', { port });
        return port;
      }),
      implement(m.release_port, (port) => {
        if (this.deps.ports.release(port)) this.deps.log.info('release_port: a port assign_port gave out is free again', { port });
        return null;
      }),
      implement(m.get_local_config, () => ({ agent: { 'abuse-report-path': '' }, watcher: {} })),
      implement(m.shutdown_agent, async (terminateKernels) => {
        if (terminateKernels) await k.reset();
        // after this reply is queued: the drain waits for calls in flight, this one included
        setImmediate(() => this.deps.requestStop('shutdown-agent'));
        return null;
      }),
      ...modernNotServed.map((name) =>
        notImplemented(
          define({ name, summary: 'not served by this agent yet', params: [], returns: 'a failure naming the method', unchecked: true }),
        ),
      ),
    ];
  }

  private async createKernels(
    sessionId: string,
    ids: string[],
    rawConfigs: Array<Record<string, unknown>>,
    rawCluster: Record<string, unknown>,
    refs: Record<string, unknown>,
  ): Promise<ModernKernelResult[]> {
    if (ids.length !== rawConfigs.length)
      throw new KernelCreationError(
        `create_kernels got ${ids.length} kernel ids but ${rawConfigs.length} configs; they pair up one to one`,
      );
    const cluster = readClusterInfo(rawCluster);
    const network = cluster.network;
    const hostnames = network ? rawConfigs.map(clusterHostnameOf) : [];
    if (new Set(hostnames).size < hostnames.length)
      throw new KernelCreationError(
        `create_kernels: the cluster hostnames ${hostnames.join(', ')} repeat; each kernel of a session needs its own`,
      );
    // never a network outside the firewall's cover, nor an overlay that is not a session's
    if (network) await (cluster.overlay ? this.deps.sessionOverlays.check(network) : this.deps.sessionNetworks.check(network));
    const configs = ids.length > 1 || network ? withClusterEnviron(rawConfigs, cluster) : rawConfigs;
    const ssh = network ? (cluster.ssh ?? newSshKeypair()) : null; // one pair for the kernels of the session
    if (cluster.overlay && !cluster.ssh)
      this.deps.log.warn(
        'create_kernels: a multi-node session without ssh_keypair: the pair made here serves ssh among the kernels of this node only',
        {
          sessionId,
        },
      );
    const outcomes = await Promise.allSettled(
      ids.map(async (id, i) => {
        let extras: ModernKernelExtras | undefined;
        // known before the creation starts, so that its kernel_preparing / kernel_creating name the session
        if (!this.sessions.has(id)) this.sessions.set(id, { sessionId, extras: defaultExtras(), info: null });
        let info: KernelInfo;
        try {
          info = await this.deps.kernels.create(id, configs[i]!, (s) => {
            const r = parseModernKernelConfig(configs[i]!, refs[id], s);
            extras = r.extras;
            return network ? { ...r.spec, cluster: { network, hostname: hostnames[i]!, ssh, overlay: cluster.overlay } } : r.spec;
          });
          if (network && cluster.overlay) await this.deps.sessionOverlays.verify(info.container_id, network); // a failure rolls the session back
        } catch (err) {
          if (!this.deps.kernels.list().some((r) => r.id === id)) this.sessions.delete(id); // rolled back: nothing left to report on
          throw err;
        }
        extras ??= this.sessions.get(id)?.extras ?? defaultExtras(); // an idempotent repeat reads no config
        if (extras.ignored.length)
          this.deps.log.warn('create_kernels: config keys ignored by this agent', { kernelId: id, keys: extras.ignored });
        const mk = { sessionId, extras, info };
        this.sessions.set(id, mk);
        this.deps.emitModern('kernel_started', [id, sessionId, 'new-container-started', creationInfo(mk, this.deps.agentAddr)]);
        return creationInfo(mk, this.deps.agentAddr);
      }),
    );
    const failed = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [{ id: ids[i]!, err: o.reason as unknown }] : []));
    if (failed.length > 0 && network) await this.rollBackSession(sessionId, ids, failed.length);
    if (failed.length === 1 && failed[0]!.err instanceof AgentError) throw failed[0]!.err; // as 24.09: one failure is raised as it is
    if (failed.length > 0) {
      const each = failed.map((f) => `${f.id}: ${f.err instanceof Error ? f.err.message : String(f.err)}`).join('; ');
      throw new KernelCreationError(
        `create_kernels: ${failed.length} of ${ids.length} kernels failed and were rolled back (${each}); ` +
          (network ? 'the session was rolled back whole' : 'the others were created'),
      );
    }
    return outcomes.map((o) => (o as PromiseFulfilledResult<ModernKernelResult>).value);
  }

  /**
   * Destroys the kernels of a session's call that did start, when another
   * failed: a session runs whole or not at all on this agent (each
   * destroyed kernel says kernel_terminated, reason failed-to-start).
   */
  private async rollBackSession(sessionId: string, ids: string[], failures: number): Promise<void> {
    const held = new Set(this.deps.kernels.list().map((r) => r.id));
    const started = ids.filter((id) => held.has(id));
    this.deps.log.warn('create_kernels: a kernel of a session failed; its other kernels are destroyed', { sessionId, failures, started });
    for (const id of started)
      await this.deps.kernels
        .destroy(id, 'failed-to-start')
        .catch((err: unknown) =>
          this.deps.log.warn('create_kernels: destroying a kernel of a failed session failed', { kernelId: id, error: String(err) }),
        );
  }

  private async sync(pairs: Array<[string, string]>): Promise<null> {
    const known = new Set(pairs.map(([kid]) => kid));
    const held = new Set(this.deps.kernels.list().map((r) => r.id));
    for (const [kid, sid] of pairs) {
      if (!held.has(kid)) this.deps.emitModern('kernel_terminated', [kid, sid, 'already-terminated', null]);
    }
    for (const id of held) {
      // only the modern managers' kernels: those a 2018 manager created on this agent are not theirs to reap
      if (known.has(id) || !this.sessions.has(id)) continue;
      this.suppressed.add(id);
      await this.deps.kernels.destroy(id, 'not-found-in-manager').catch((err: unknown) =>
        this.deps.log.warn('sync_kernel_registry: destroying a kernel the manager does not know failed', {
          kernelId: id,
          error: String(err),
        }),
      );
    }
    return null;
  }
}
