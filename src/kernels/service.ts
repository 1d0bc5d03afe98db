/**
 * KernelService owns the kernels of this agent: it creates them (idempotent
 * per id, at most N at once against Docker, rolling back every step on
 * failure; claiming a warm pooled container first when a pool is given),
 * destroys, restarts and resets them, re-adopts them after an agent restart
 * (src/kernels/adopt.ts), and through KernelWatch (src/kernels/watch.ts)
 * reaps idle ones and notices containers that die by themselves.
 * It knows Docker (through the adapter) and the file system, never frames.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.js';
import { AgentError, DockerError, errorMessage, KernelCreationError, KernelNotFoundError, NoResourcesError } from '../errors.js';
import { KERNEL_PORTS, type ContainerSecurity, type DockerEngine } from '../adapters/docker.js';
import type { KernelInfo, KernelStats, KernelSummary } from '../rpc/methods.js';
import { CoresExhausted, CpuAllocator } from './allocator.js';
import { containerRequest, imageTraits, prepareScratch, type ImageTraits } from './launch.js';
import { Semaphore } from './semaphore.js';
import { checkMounts, parseKernelConfig, type KernelSpec } from './spec.js';
import type { CgroupStats } from './stats.js';
import { ScratchFiles, type FileLimits } from './files.js';
import type { KernelRelay } from '../relay/kernel-relay.js';
import type { TerminalRelay } from '../relay/terminal.js';
import { KernelRelays } from './relays.js';
import { adoptKernels } from './adopt.js';
import { KernelWatch } from './watch.js';
import type { PooledContainer, WarmPool } from '../pool/pool.js';
import { environStatement, shellWaitStatement } from '../pool/claims.js';

/** A kernel the agent holds. */
export interface KernelRecord {
  id: string;
  spec: KernelSpec;
  traits: ImageTraits;
  containerId: string;
  pid: number | null;
  ports: number[];
  cpuSet: number[];
  scratchDir: string;
  createdAt: number;
  lastUsed: number;
  state: 'running' | 'restarting' | 'destroying';
  /** A restart in progress; calls on the kernel wait for it. */
  busy: Promise<unknown> | null;
  /** Terminal shells hung up by a warm-pool claim; the terminal opens once the runner has started another. */
  staleShells?: number[];
  /** The rename of a claimed container to the kernel's name, done after the reply; removal waits for it. */
  renamed?: Promise<void>;
}

/** What the service needs from the rest of the agent. */
export interface KernelServiceDeps {
  docker: DockerEngine;
  stats: CgroupStats;
  log: Logger;
  emit(name: string, args: unknown[]): void;
  agentId: string;
  scratchRoot: string;
  kernelHost: string;
  cores: number[];
  /** Current values of live settings. */
  settings(): {
    imagePrefix: string;
    imageAllowList: string[];
    vfolderRoot: string;
    kernelUid: number;
    idleTimeoutSec: number;
    execTimeoutSec: number;
    fileLimits: FileLimits;
    security: ContainerSecurity;
    /** Host address kernel ports are published on; empty = `kernelHost`. */
    publishAddr: string;
  };
  createConcurrency: number;
  cpuOvercommit: number;
  /** The warm pool asked before every cold create; none: always cold. */
  pool?: WarmPool | null;
}

export class KernelService {
  private readonly kernels = new Map<string, KernelRecord>();
  private readonly creating = new Map<string, Promise<KernelInfo>>();
  private readonly destroying = new Map<string, Promise<KernelStats | null>>();
  private readonly relays: KernelRelays;
  private readonly pendingReports: Array<[string, string, KernelStats | null]> = [];
  readonly createSlots: Semaphore;
  readonly cores: CpuAllocator;
  private readonly watch: KernelWatch;

  constructor(private readonly deps: KernelServiceDeps) {
    this.createSlots = new Semaphore(deps.createConcurrency);
    this.cores = new CpuAllocator(deps.cores, deps.cpuOvercommit);
    this.relays = new KernelRelays({
      kernelHost: deps.kernelHost,
      log: deps.log,
      execTimeoutSec: () => deps.settings().execTimeoutSec,
      onExecTimeout: (id, log) => {
        this.destroy(id, 'exec-timeout').catch((err: unknown) => log.error('destroying a timed-out kernel failed', { error: errorMessage(err) }));
      },
    });
    this.watch = new KernelWatch({
      docker: deps.docker,
      agentId: deps.agentId,
      log: deps.log,
      idleTimeoutSec: () => deps.settings().idleTimeoutSec,
      kernels: () => this.kernels.values(),
      isCreating: (id) => this.creating.has(id),
      destroy: (id, reason) => this.destroy(id, reason),
      strayDied: (cid) => deps.pool?.died(cid),
    });
  }

  /** How many kernels are in each state, creations under way included (for metrics). */
  stateCounts(): Record<string, number> {
    const out: Record<string, number> = { creating: this.creating.size, running: 0, restarting: 0, destroying: 0 };
    for (const r of this.kernels.values()) out[r.state] = (out[r.state] ?? 0) + 1;
    return out;
  }

  /** The kernels held, for listings. */
  list(): KernelRecord[] {
    return [...this.kernels.values()];
  }

  /**
   * Reads the cgroup figures of every running kernel (never the Docker stats
   * API), by kernel id; a kernel whose figures cannot be read is left out.
   */
  async sampleStats(): Promise<Record<string, KernelStats>> {
    const live = this.list().filter((rec) => rec.state === 'running' && rec.containerId !== '');
    const read = await Promise.all(
      live.map((rec) =>
        this.deps.stats.read({ containerId: rec.containerId, pid: rec.pid, scratchDir: rec.scratchDir }).catch((err: unknown) => {
          this.deps.log.debug('could not read kernel stats', { kernelId: rec.id, error: errorMessage(err) });
          return null;
        }),
      ),
    );
    return Object.fromEntries(live.flatMap((rec, i) => (read[i] ? [[rec.id, read[i]]] : [])));
  }

  /** list_kernels: every kernel held, with its current CPU time and memory (a cgroup read each, no scratch walk). */
  async summaries(): Promise<KernelSummary[]> {
    return Promise.all(
      this.list().map(async (rec) => {
        const usage = await this.deps.stats.readUsage({ containerId: rec.containerId, pid: rec.pid }).catch(() => null);
        return {
          id: rec.id, lang: rec.spec.lang, image: rec.spec.image, state: rec.state, container_id: rec.containerId,
          cpu_set: rec.cpuSet, mem_mib: rec.spec.memMiB, created_at: rec.createdAt / 1000, last_used: rec.lastUsed / 1000,
          cpu_used: usage?.cpu_used ?? null, mem_cur_bytes: usage?.mem_cur_bytes ?? null,
        };
      }),
    );
  }

  /** create_kernel: returns the info of a live or in-flight kernel of the same id instead of creating another. */
  async create(id: string, config: Record<string, unknown>): Promise<KernelInfo> {
    // Everything up to `creating.set` runs without an await, so two calls for one id cannot both start a creation.
    const inflight = this.creating.get(id);
    if (inflight) return inflight;
    const destroying = this.destroying.get(id);
    if (destroying) {
      await destroying.catch(() => undefined);
      return this.create(id, config);
    }
    const live = this.kernels.get(id);
    if (live) {
      if (live.busy) await live.busy.catch(() => undefined);
      this.touch(live);
      return this.info(live);
    }
    const s = this.deps.settings();
    const spec = parseKernelConfig(config, s.imagePrefix, s.vfolderRoot, s.imageAllowList); // a bad config takes nothing
    const p = this.createWarmOrCold(id, spec).finally(() => this.creating.delete(id));
    this.creating.set(id, p);
    this.deps.emit('kernel_creating', [id]);
    return p;
  }

  /** Claims a warm pooled container that fits the spec; falls back to a cold create when none fits or the claim fails. */
  private async createWarmOrCold(id: string, spec: KernelSpec): Promise<KernelInfo> {
    const pool = this.deps.pool;
    if (pool) {
      const cpuSet = this.takeCores(spec); // no room: NoResources, nothing taken
      const warm = pool.take(spec, cpuSet);
      if (warm) {
        try {
          return await this.claimWarm(id, spec, warm, cpuSet);
        } catch (err) {
          this.deps.log.warn('claiming a warm container failed; creating the kernel cold', { kernelId: id, error: errorMessage(err) });
        }
      } else this.cores.release(cpuSet);
    }
    return this.createSlots.run(() => this.doCreate(id, spec));
  }

  /**
   * Turns a taken pooled container into a kernel: the pool binds it while the
   * runner takes the kernel's environment; on failure it is removed and
   * everything taken released. The container is renamed after the reply.
   */
  private async claimWarm(id: string, spec: KernelSpec, warm: PooledContainer, cpuSet: number[]): Promise<KernelInfo> {
    const pool = this.deps.pool!;
    const rec: KernelRecord = {
      id, spec: { ...spec, cpuSet }, traits: warm.traits, cpuSet, scratchDir: pool.homeOf(id), containerId: warm.containerId, pid: warm.pid, ports: warm.ports,
      createdAt: Date.now(), lastUsed: Date.now(), state: 'running', busy: null,
    };
    // The runner started before the claim: give it (and the terminal's shell) the kernel's environment.
    const giveEnviron = async () => {
      const environ = { ...spec.environ, ...Object.fromEntries(warm.traits.coreCountEnvs.map((n) => [n, String(cpuSet.length)])) };
      if (warm.relay) this.relays.adopt(rec, warm.relay); // open since the container was made: no connect here
      warm.relay = null;
      const r = await this.relays.relay(rec).runToEnd(environStatement(environ), 10_000);
      if (r.exitCode !== 0) throw new Error(`the runner could not take the environment (exit code ${r.exitCode})`);
      // The terminal's old shell was hung up: the first terminal use waits for its successor.
      const printed = (r.console ?? []).filter((e) => e[0] === 'stdout').map((e) => String(e[1])).join('');
      rec.staleShells = JSON.parse(printed.trim() || '[]') as number[];
    };
    try {
      await pool.bind(warm, id, spec, cpuSet, giveEnviron);
    } catch (err) {
      warm.relay?.close(); // the claim failed before the runner was asked anything
      this.relays.close(id);
      this.cores.release(cpuSet);
      throw err;
    }
    this.kernels.set(id, rec);
    rec.renamed = pool.nameAsKernel(rec.containerId, spec.lang, id);
    this.deps.log.info('kernel started from the warm pool', { kernelId: id, container: rec.containerId.slice(0, 12), cpuSet, memMiB: spec.memMiB });
    this.deps.emit('kernel_started', [id]);
    return this.info(rec);
  }

  private async doCreate(id: string, spec: KernelSpec): Promise<KernelInfo> {
    const log = this.deps.log.child({ kernelId: id });
    const undo: Array<() => Promise<void> | void> = [];
    let step = 'checking the image';
    try {
      await checkMounts(spec.mounts, this.deps.settings().vfolderRoot); // a ParametersError, before anything is taken
      const image = await this.deps.docker.image(spec.image);
      const traits = imageTraits(image.labels);
      step = 'allocating cores';
      const cpuSet = this.takeCores(spec);
      undo.push(() => this.cores.release(cpuSet));
      step = 'creating the scratch home';
      const scratchDir = path.join(this.deps.scratchRoot, id);
      await fs.rm(scratchDir, { recursive: true, force: true }); // a leftover of a crash; no kernel holds it
      undo.push(() => fs.rm(scratchDir, { recursive: true, force: true }));
      await prepareScratch(scratchDir, spec.environ, this.deps.settings().kernelUid);
      const rec: KernelRecord = {
        id, spec, traits, cpuSet, scratchDir, containerId: '', pid: null, ports: [],
        createdAt: Date.now(), lastUsed: Date.now(), state: 'running', busy: null,
      };
      await this.launch(rec, undo, (s) => (step = s));
      this.kernels.set(id, rec);
      log.info('kernel started', { container: rec.containerId.slice(0, 12), cpuSet, memMiB: spec.memMiB, ports: rec.ports });
      this.deps.emit('kernel_started', [id]);
      return this.info(rec);
    } catch (err) {
      for (const fn of undo.reverse()) {
        try {
          await fn();
        } catch (e) {
          log.error('rollback step failed; something may be left behind', { error: errorMessage(e) });
        }
      }
      log.warn('kernel creation failed and was rolled back', { step, error: errorMessage(err) });
      if (err instanceof AgentError && !(err instanceof DockerError)) throw err; // already says what to do
      throw new KernelCreationError(`create_kernel ${id} failed while ${step}: ${errorMessage(err)}; everything it took was released`, { cause: err });
    }
  }

  /** Creates and starts the container of a record, filling in its id, pid and ports; pushes its undo. */
  private async launch(rec: KernelRecord, undo: Array<() => Promise<void> | void>, at: (step: string) => void): Promise<void> {
    const s = this.deps.settings();
    at('creating the container');
    const containerId = await this.deps.docker.create(
      containerRequest({
        agentId: this.deps.agentId, kernelId: rec.id, spec: rec.spec, cpuSet: rec.cpuSet, traits: rec.traits,
        scratchDir: rec.scratchDir, kernelUid: s.kernelUid, publishHost: s.publishAddr || this.deps.kernelHost,
        security: s.security, createdAt: rec.createdAt,
      }),
    );
    undo.push(() => this.deps.docker.remove(containerId));
    at('starting the container');
    await this.deps.docker.start(containerId);
    at('reading the published ports');
    const state = await this.deps.docker.inspect(containerId);
    const ports = KERNEL_PORTS.map((p) => state?.ports[p]);
    if (!state?.running || ports.some((p) => !p)) throw new Error('the container stopped right after it started; docker logs has its output');
    Object.assign(rec, { containerId, pid: state.pid, ports: ports as number[] });
  }

  private takeCores(spec: KernelSpec): number[] {
    try {
      if (spec.cpuSet) {
        this.cores.claim(spec.cpuSet);
        return spec.cpuSet;
      }
      return this.cores.allocate(spec.cpuCount);
    } catch (err) {
      if (err instanceof CoresExhausted) throw new NoResourcesError(`not enough CPU cores for this kernel: ${err.message}`);
      throw err;
    }
  }

  /** destroy_kernel: a second call for a kernel being destroyed waits for the first. */
  async destroy(id: string, reason = 'user-requested'): Promise<KernelStats | null> {
    // As in create(): no await before `destroying.set`, so concurrent calls share one destruction.
    const pending = this.destroying.get(id);
    if (pending) return pending;
    const creating = this.creating.get(id);
    if (creating) {
      await creating.catch(() => undefined);
      return this.destroy(id, reason);
    }
    const rec = this.kernels.get(id);
    if (!rec) throw new KernelNotFoundError(id);
    if (rec.busy) {
      await rec.busy.catch(() => undefined);
      return this.destroy(id, reason);
    }
    const p = this.doDestroy(rec, reason).finally(() => this.destroying.delete(id));
    this.destroying.set(id, p);
    return p;
  }

  /** Reads the last stats of a kernel's container, then removes the container and closes its relays. */
  private async retireContainer(rec: KernelRecord): Promise<KernelStats | null> {
    const stats = await this.deps.stats.read({ containerId: rec.containerId, pid: rec.pid, scratchDir: rec.scratchDir }).catch((err: unknown) => {
      this.deps.log.warn('could not read the last stats', { kernelId: rec.id, error: errorMessage(err) });
      return null;
    });
    await rec.renamed; // never rejects; a rename racing the removal could leave the kernel's name held
    await this.deps.docker.remove(rec.containerId);
    this.relays.close(rec.id);
    this.deps.stats.forget(rec.containerId);
    await this.deps.pool?.released(rec.containerId);
    return stats;
  }

  private async doDestroy(rec: KernelRecord, reason: string): Promise<KernelStats | null> {
    rec.state = 'destroying';
    let stats: KernelStats | null;
    try {
      stats = await this.retireContainer(rec);
    } catch (err) {
      rec.state = 'running';
      throw err;
    }
    await fs.rm(rec.scratchDir, { recursive: true, force: true });
    this.cores.release(rec.cpuSet);
    this.kernels.delete(rec.id);
    this.deps.log.info('kernel destroyed', { kernelId: rec.id, reason });
    this.deps.emit('kernel_terminated', [rec.id, reason, stats]);
    return stats;
  }

  /** restart_kernel: a new container on the same scratch home and cores; calls on the kernel wait meanwhile. */
  async restart(id: string, config: Record<string, unknown>): Promise<Omit<KernelInfo, 'id' | 'kernel_host'>> {
    const rec = await this.ready(id);
    if (rec.busy) {
      // Another restart got here first: run after it (no await from here until `rec.busy` is set).
      await rec.busy.catch(() => undefined);
      return this.restart(id, config);
    }
    const s = this.deps.settings();
    const spec = parseKernelConfig(config, s.imagePrefix, s.vfolderRoot, s.imageAllowList);
    await checkMounts(spec.mounts, s.vfolderRoot); // a bad mount is refused before the old container goes
    if (rec.busy || this.kernels.get(id) !== rec || this.destroying.has(id)) return this.restart(id, config); // changed meanwhile: look again
    const undo: Array<() => Promise<void> | void> = [];
    const work = (async () => {
      rec.state = 'restarting';
      const stats = await this.retireContainer(rec);
      this.deps.emit('kernel_terminated', [id, 'restarting', stats]);
      const image = await this.deps.docker.image(spec.image);
      Object.assign(rec, { spec: { ...spec, cpuSet: rec.cpuSet }, traits: imageTraits(image.labels) });
      await prepareScratch(rec.scratchDir, spec.environ, s.kernelUid);
      await this.launch(rec, undo, () => undefined);
      rec.state = 'running';
      this.deps.emit('kernel_started', [id]);
    })();
    rec.busy = work;
    try {
      await work;
    } catch (err) {
      // Remove what the restart made, and the old container if removing it was what failed;
      // then the kernel has no container: give back what it holds and tell the manager.
      for (const fn of undo.reverse()) await Promise.resolve().then(fn).catch(() => undefined);
      await this.deps.docker.remove(rec.containerId).catch((e: unknown) =>
        this.deps.log.error('could not remove the old container of a failed restart', { kernelId: id, error: errorMessage(e) }),
      );
      this.kernels.delete(id);
      this.cores.release(rec.cpuSet);
      await fs.rm(rec.scratchDir, { recursive: true, force: true });
      this.deps.emit('kernel_terminated', [id, 'restarting', null]);
      throw new KernelCreationError(`restart_kernel ${id} failed: ${errorMessage(err)}; the kernel was removed`, { cause: err });
    } finally {
      rec.busy = null;
    }
    const { id: _id, kernel_host: _host, ...rest } = this.info(rec);
    return rest;
  }

  /** reset: destroys every kernel with reason agent-reset. */
  async reset(): Promise<void> {
    const results = await Promise.allSettled([...this.kernels.keys()].map((id) => this.destroy(id, 'agent-reset')));
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length) throw new AgentError(`reset could not destroy ${failed.length} kernel(s): ${errorMessage((failed[0] as PromiseRejectedResult).reason)}`);
  }

  /** get_logs: the container's output. */
  async logs(id: string): Promise<string> {
    return this.deps.docker.logs((await this.ready(id)).containerId);
  }

  /** The file operations of a kernel's scratch home. */
  async files(id: string): Promise<ScratchFiles> {
    const rec = await this.ready(id);
    return new ScratchFiles(rec.scratchDir, this.deps.settings().fileLimits);
  }

  /** The relay to a kernel's runner, opened on first use; counts as use. */
  async relay(id: string): Promise<KernelRelay> {
    return this.relays.relay(await this.ready(id));
  }

  /** The relay to a kernel's terminal, opened on first use; counts as use. */
  async terminal(id: string): Promise<TerminalRelay> {
    const rec = await this.ready(id);
    const stale = rec.staleShells;
    if (stale?.length) {
      await this.relays.relay(rec).runToEnd(shellWaitStatement(stale), 10_000);
      rec.staleShells = [];
    }
    return this.relays.terminal(rec);
  }

  /** The record of a kernel once no restart is in progress; counts as use. */
  async ready(id: string): Promise<KernelRecord> {
    await this.creating.get(id)?.catch(() => undefined);
    const rec = this.kernels.get(id);
    if (!rec || rec.state === 'destroying') throw new KernelNotFoundError(id);
    await rec.busy?.catch(() => undefined);
    if (!this.kernels.has(id)) throw new KernelNotFoundError(id);
    this.touch(rec);
    return rec;
  }

  private touch(rec: KernelRecord): void {
    rec.lastUsed = Date.now();
  }

  private info(rec: KernelRecord): KernelInfo {
    const [replIn, replOut, stdin, stdout] = rec.ports as [number, number, number, number];
    return {
      id: rec.id, kernel_host: this.deps.kernelHost, repl_in_port: replIn, repl_out_port: replOut, stdin_port: stdin, stdout_port: stdout,
      container_id: rec.containerId, cpu_set: rec.cpuSet, gpu_set: rec.spec.gpuSet ?? [],
    };
  }

  /**
   * Rebuilds the registry from the containers carrying this agent's label:
   * running ones are adopted as they are (ports, cores, limits), dead ones
   * removed and reported once a sink is known, and scratch homes that belong
   * to no kernel removed.
   */
  async adopt(): Promise<void> {
    await adoptKernels({ deps: this.deps, cores: this.cores, kernels: this.kernels, reports: this.pendingReports });
  }

  /** Sends the terminations found by adopt(); called when an event sink appears. */
  flushReports(): void {
    for (const r of this.pendingReports.splice(0)) this.deps.emit('kernel_terminated', r);
  }

  /** Starts the idle reaper and the watch for containers that die by themselves (src/kernels/watch.ts). */
  startBackground(): void {
    this.watch.start();
  }

  /** Stops the background work and closes the relays; kernels keep running (a clean agent shutdown does not kill them). */
  close(): void {
    this.watch.stop();
    this.relays.closeAll();
  }
}
