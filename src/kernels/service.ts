/**
 * KernelService owns the kernels of this agent: it creates them (idempotent
 * per id, at most N at once against Docker, rolling back every step on
 * failure; claiming a warm pooled container first when a pool is given),
 * destroys, restarts (src/kernels/restart.ts) and resets them, re-adopts them after an agent restart
 * (src/kernels/adopt.ts), and through KernelWatch (src/kernels/watch.ts)
 * reaps idle ones and notices containers that die by themselves.
 * It knows Docker (through the adapter) and the file system, never frames.
 */
import { AgentError, DestroyPendingError, errorMessage, KernelNotFoundError } from '../errors.js';
import { PendingDestroys, removeContainer, removeUntilGone, within } from './teardown.js';
import { KernelEndings, kernelLogs, type Ending } from './endings.js';
import { KernelSync } from './sync.js';
import { SelfSync } from './self-sync.js';
import type { KernelInfo, KernelStats, KernelSummary } from '../rpc/results.js';
import { CpuAllocator } from './allocator.js';
import { MemoryBook, nodeMemoryMiB, schedulable, type Capacity } from '../node/memory.js';
import { Semaphore } from './semaphore.js';
import { parseKernelConfig, type KernelSpec } from '../containers/spec.js';
import { ScratchFiles } from './files.js';
import type { KernelRelay } from '../relay/kernel-relay.js';
import type { TerminalRelay } from '../relay/terminal.js';
import { KernelRelays } from './relays.js';
import { adoptKernels } from './adopt.js';
import { KernelWatch } from './watch.js';
import { KernelFactory } from './create.js';
import { kernelInfo, statsTarget, type KernelRecord, type KernelServiceDeps } from './record.js';
import { homesOf } from '../scratch/homes.js';
import { shellWaitStatement } from '../relay/runner-snippets.js';
import { restartKernel, type RestartTarget } from './restart.js';
import { sampleStats, summaries } from './listing.js';
import { faultPoint } from '../util/faults.js';

export type { KernelRecord, KernelServiceDeps } from './record.js';

export class KernelService {
  private readonly kernels = new Map<string, KernelRecord>();
  private readonly creating = new Map<string, Promise<KernelInfo>>();
  private readonly destroying = new Map<string, Promise<KernelStats | null>>();
  /** Destroys that answered agent.DestroyPending and go on removing the container in the background. */
  private readonly tearingDown = new PendingDestroys<KernelStats | null>();
  private closed = false;
  /**
   * Called before a new kernel is made (not for one the agent holds, nor a
   * restart); throws to refuse it: the node's drain sets it (src/services/drain.ts).
   */
  admission: (() => void) | null = null;
  /** The final output of kernels that died by themselves, for get_logs after they are gone. */
  private readonly endings = new KernelEndings();
  /** sync_kernels (src/kernels/sync.ts). */
  readonly sync: KernelSync;
  private readonly selfSync: SelfSync;
  private readonly relays: KernelRelays;
  private readonly pendingReports: Array<[string, string, KernelStats | null]> = [];
  readonly createSlots: Semaphore;
  /** Bounds the download archives held in memory at once (src/kernels/files.ts). */
  private readonly downloadSlots: Semaphore;
  readonly cores: CpuAllocator;
  /** Kernels' memory limits, charged and released with their cores (src/node/memory.ts). */
  readonly memory: MemoryBook;
  private readonly watch: KernelWatch;
  private readonly factory: KernelFactory;
  /** What restart() hands src/kernels/restart.ts. */
  private readonly restarts: RestartTarget;

  constructor(private readonly deps: KernelServiceDeps) {
    this.createSlots = new Semaphore(deps.createConcurrency);
    this.downloadSlots = new Semaphore(deps.downloadConcurrency);
    this.cores = new CpuAllocator(deps.cores, deps.cpuOvercommit);
    this.memory = new MemoryBook(() => this.capacity().memSlotsMiB);
    this.relays = new KernelRelays({
      kernelHost: deps.kernelHost,
      log: deps.log,
      execTimeoutSec: () => deps.settings().execTimeoutSec,
      onExecTimeout: (id, log) => {
        this.destroy(id, 'exec-timeout').catch((err: unknown) =>
          log.error('destroying a timed-out kernel failed', { error: errorMessage(err) }),
        );
      },
      onRunnerRestart: (id, line) => deps.emit('kernel_runner_restarted', [id, line]),
      oomKills: (containerId, pid) => deps.stats.oomKills({ containerId, pid }),
    });
    this.factory = new KernelFactory({
      deps,
      cores: this.cores,
      memory: this.memory,
      capacityMiB: () => this.capacity().memSlotsMiB,
      relays: this.relays,
      kernels: this.kernels,
      createSlots: this.createSlots,
    });
    const destroy = (id: string, reason: string) => this.destroy(id, reason);
    this.sync = new KernelSync({
      held: () => [...new Set([...this.kernels.keys(), ...this.creating.keys()])],
      destroy,
      emit: deps.emit,
      graceSec: () => deps.settings().syncGraceSec,
      log: deps.log.child({ component: 'sync' }),
    });
    this.selfSync = new SelfSync({
      docker: deps.docker,
      agentId: deps.agentId,
      records: () => this.list(),
      destroy,
      busy: (id) => this.creating.has(id) || this.destroying.has(id) || this.tearingDown.has(id),
      intervalSec: () => deps.settings().selfSyncIntervalSec,
      log: deps.log.child({ component: 'self-sync' }),
    });
    this.watch = new KernelWatch({
      docker: deps.docker,
      agentId: deps.agentId,
      log: deps.log,
      idleTimeoutSec: () => deps.settings().idleTimeoutSec,
      kernels: () => this.kernels.values(),
      isCreating: (id) => this.creating.has(id),
      destroy: (id, reason, ending) => this.destroy(id, reason, ending),
      strayDied: (cid) => deps.pool?.died(cid),
    });
    this.restarts = {
      deps,
      factory: this.factory,
      kernels: this.kernels,
      relays: this.relays,
      destroying: (id) => this.destroying.has(id),
      ready: (id) => this.ready(id),
      retireContainer: (rec, reason) => this.retireContainer(rec, reason),
      destroyBoundMs: () => this.destroyBoundMs(),
      touch: (rec) => this.touch(rec),
      info: (rec) => this.info(rec),
    };
  }

  /** How many kernels are in each state, creations under way included (for metrics). */
  stateCounts(): Record<string, number> {
    const out: Record<string, number> = { creating: this.creating.size, running: 0, restarting: 0, destroying: 0 };
    for (const r of this.kernels.values()) out[r.state] = (out[r.state] ?? 0) + 1;
    return out;
  }

  /** The node's schedulable totals (the heartbeat's cpu_slots and mem_slots): its figures minus the reserves, times the overcommits. */
  capacity(): Capacity {
    return schedulable(
      { cores: this.deps.cores.length, memMiB: nodeMemoryMiB() },
      { cpuOvercommit: this.deps.cpuOvercommit, ...this.deps.settings() },
    );
  }

  /** What is free now of {@link capacity} (for get_node_stats and the metrics). */
  freeSlots(): Capacity {
    return { cpuSlots: Math.max(0, this.capacity().cpuSlots - this.cores.allocated), memSlotsMiB: this.memory.free };
  }

  /** The kernels held, for listings. */
  list(): KernelRecord[] {
    return [...this.kernels.values()];
  }

  /** The cgroup figures of every running kernel by kernel id, unreadable ones left out (src/kernels/listing.ts). */
  async sampleStats(): Promise<Record<string, KernelStats>> {
    return sampleStats(this.deps, this.list());
  }

  /** list_kernels: every kernel held, with its current CPU time and memory (a cgroup read each, no scratch walk). */
  async summaries(): Promise<KernelSummary[]> {
    return summaries(this.deps, this.list());
  }

  /**
   * create_kernel: returns the info of a live or in-flight kernel of the same id instead of creating another.
   * `readSpec` reads another generation's config (src/kernels/modern-spec.ts); the 2018 reader by default.
   */
  async create(
    id: string,
    config: Record<string, unknown>,
    readSpec?: (s: ReturnType<KernelServiceDeps['settings']>) => KernelSpec,
  ): Promise<KernelInfo> {
    // Everything up to `creating.set` runs without an await, so two calls for one id cannot both start a creation.
    const inflight = this.creating.get(id);
    if (inflight) return inflight;
    const destroying = this.destroying.get(id);
    if (destroying) {
      await destroying.catch(() => undefined); // only waits for it to settle: its failure is answered to its own caller
      return this.create(id, config, readSpec);
    }
    const live = this.kernels.get(id);
    if (live) {
      if (live.busy) await live.busy.catch(() => undefined); // only waits for it to settle: its failure is answered to its own caller
      this.touch(live);
      return this.info(live);
    }
    this.admission?.(); // a draining node refuses new kernels (src/services/drain.ts); the ones it holds are answered above
    const s = this.deps.settings();
    const spec = readSpec ? readSpec(s) : parseKernelConfig(config, s.imagePrefix, s.vfolderRoot, s.imageAllowList); // a bad config takes nothing
    const p = this.factory.createWarmOrCold(id, spec).finally(() => this.creating.delete(id));
    this.creating.set(id, p);
    this.deps.emit('kernel_creating', [id]);
    return p;
  }

  /** destroy_kernel: a second call for a kernel being destroyed waits for the first. */
  async destroy(id: string, reason = 'user-requested', ending?: Ending): Promise<KernelStats | null> {
    // As in create(): no await before `destroying.set`, so concurrent calls share one destruction.
    const pending = this.destroying.get(id);
    if (pending) return pending;
    const tearing = this.tearingDown.wait(id, this.destroyBoundMs());
    if (tearing) return tearing;
    const creating = this.creating.get(id);
    if (creating) {
      await creating.catch(() => undefined); // only waits for it to settle: its failure is answered to its own caller
      return this.destroy(id, reason, ending);
    }
    const rec = this.kernels.get(id);
    if (!rec) throw new KernelNotFoundError(id);
    if (rec.busy) {
      await rec.busy.catch(() => undefined); // only waits for it to settle: its failure is answered to its own caller
      return this.destroy(id, reason, ending);
    }
    if (ending) this.endings.record(id, ending.finalLog);
    const p = this.doDestroy(rec, reason, ending).finally(() => this.destroying.delete(id));
    this.destroying.set(id, p);
    return p;
  }

  /**
   * destroy_kernel as managers call it: a kernel this agent does not hold
   * answers nil (as the 2018 agent did) and is reported terminated with
   * reason `not-found`, so that a manager can finish its records.
   */
  async destroyAsked(id: string, reason: string): Promise<KernelStats | null> {
    return this.destroy(id, reason).catch((err: unknown) => {
      if (!(err instanceof KernelNotFoundError)) throw err;
      this.deps.log.info('destroy_kernel of a kernel this agent does not hold: reported terminated (not-found)', { kernelId: id });
      this.deps.emit('kernel_terminated', [id, 'not-found', null]);
      return null;
    });
  }

  /** Destroys a kernel whose create or restart reply could not be delivered (the caller is gone), with reason create-abandoned. */
  abandoned(id: string): void {
    this.deps.log.warn('the reply of a create or restart could not be delivered (the caller is gone); destroying the kernel', {
      kernelId: id,
    });
    this.destroy(id, 'create-abandoned').catch((err: unknown) =>
      this.deps.log.error('destroying an abandoned kernel failed', { kernelId: id, error: errorMessage(err) }),
    );
  }

  /**
   * Reads the last stats of a kernel's container, then removes the container
   * and closes its relays: runs not finished end with the reason.
   */
  private async retireContainer(rec: KernelRecord, reason: string): Promise<KernelStats | null> {
    const stats = await this.deps.stats.read(statsTarget(rec)).catch((err: unknown) => {
      this.deps.log.warn('could not read the last stats', { kernelId: rec.id, error: errorMessage(err) });
      return null;
    });
    if (stats && rec.spec.gpuSet?.length && this.deps.gpus) stats.gpu_mem_max_bytes = this.deps.gpus.takeMemoryMax(rec.containerId);
    const boundMs = this.destroyBoundMs();
    const started = Date.now(); // the rename's wait and the removal share the one bound
    await within(Promise.resolve(rec.renamed), boundMs / 4, 'the rename').catch(() => undefined); // a rename racing the removal could leave the kernel's name held
    const t = await removeContainer(this.deps.docker, rec.containerId, Math.max(1, boundMs - (Date.now() - started)));
    if (!t.gone) {
      throw new DestroyPendingError(
        `kernel ${rec.id}: its container ${rec.containerId.slice(0, 12)} is not gone after ${boundMs / 1000} s (destroy_timeout; tried: ${t.steps.slice(-4).join('; ')}); ` +
          'the agent keeps removing it and sends kernel_terminated once it is',
        { cause: { stats } },
      );
    }
    await this.afterRemoval(rec, reason);
    return stats;
  }

  /** What follows the container's removal: its relays closed (runs end with the reason), its stats and pool entry forgotten. */
  private async afterRemoval(rec: KernelRecord, reason: string): Promise<void> {
    this.relays.close(rec.id, reason, reason === 'restarting');
    this.deps.stats.forget(rec.containerId);
    await this.deps.pool?.released(rec.containerId);
  }

  private destroyBoundMs(): number {
    return this.deps.settings().destroyTimeoutSec * 1000;
  }

  private async doDestroy(rec: KernelRecord, reason: string, ending?: Ending): Promise<KernelStats | null> {
    rec.state = 'destroying';
    let stats: KernelStats | null;
    try {
      stats = await this.retireContainer(rec, reason);
      if (stats && ending?.exitCode != null) Object.assign(stats, { end_detail: ending.detail, exit_code: ending.exitCode });
    } catch (err) {
      if (err instanceof DestroyPendingError) {
        // Answer now; the container goes later, and only then what it holds.
        this.deps.log.warn('a destroy could not see the container gone in time; removing it in the background', {
          kernelId: rec.id,
          error: err.message,
        });
        const last = (err.cause as { stats: KernelStats | null }).stats;
        const later = removeUntilGone(
          this.deps.docker,
          rec.containerId,
          () => this.destroyBoundMs(),
          () => this.closed,
          this.deps.log.child({ kernelId: rec.id }),
        )
          .then(() => this.afterRemoval(rec, reason))
          .then(() => this.finishDestroy(rec, reason, last));
        this.tearingDown.start(rec.id, later, this.deps.log);
        throw err;
      }
      rec.state = 'running';
      throw err;
    }
    return this.finishDestroy(rec, reason, stats);
  }

  /** Gives back what a kernel held once its container is gone, and reports it. */
  private async finishDestroy(rec: KernelRecord, reason: string, stats: KernelStats | null): Promise<KernelStats | null> {
    await faultPoint('destroy.after-container-removed');
    await homesOf(this.deps).remove(rec.id); // logs what it could not remove
    this.factory.releaseCores(rec.id, rec.cpuSet);
    this.deps.gpus?.release(rec.spec.gpuSet);
    this.kernels.delete(rec.id);
    this.deps.log.info('kernel destroyed', { kernelId: rec.id, reason });
    this.deps.emit('kernel_terminated', [rec.id, reason, stats]);
    return stats;
  }

  /** restart_kernel: a new container on the same scratch home and cores; calls on the kernel wait meanwhile (src/kernels/restart.ts). */
  async restart(
    id: string,
    config: Record<string, unknown>,
    readSpec?: (s: ReturnType<KernelServiceDeps['settings']>, current: KernelSpec) => KernelSpec,
  ): Promise<Omit<KernelInfo, 'id' | 'kernel_host'>> {
    return restartKernel(this.restarts, id, config, readSpec);
  }

  /**
   * reset: destroys every kernel with reason agent-reset (or `reason`: node-drain at a drain's deadline), those whose create
   * is under way too (each once its create settles: a create that fails has
   * nothing to destroy).
   */
  async reset(reason = 'agent-reset'): Promise<void> {
    const ids = new Set([...this.kernels.keys(), ...this.creating.keys()]);
    const results = await Promise.allSettled(
      [...ids].map((id) =>
        this.destroy(id, reason).catch((err: unknown) => {
          if (!(err instanceof KernelNotFoundError)) throw err; // its create failed: nothing left of it
          return null;
        }),
      ),
    );
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length)
      throw new AgentError(
        `reset could not destroy ${failed.length} kernel(s): ${errorMessage((failed[0] as PromiseRejectedResult).reason)}`,
      );
  }

  /** get_logs: the container's output; for a kernel that died by itself and is gone, its final output and how it ended. */
  async logs(id: string): Promise<string> {
    const ended = this.endings.get(id);
    if (ended !== undefined && !this.kernels.has(id) && !this.creating.has(id)) return ended;
    return kernelLogs(this.deps.docker, (await this.ready(id)).containerId);
  }

  /** The file operations of a kernel's scratch home and its vfolders. */
  async files(id: string): Promise<ScratchFiles> {
    const rec = await this.ready(id);
    return new ScratchFiles(rec.scratchDir, this.deps.settings().fileLimits, this.downloadSlots, rec.spec.mounts);
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
      await this.relays.relay(rec).runToEnd(shellWaitStatement(stale, !rec.traits.runner.baked), 10_000);
      rec.staleShells = [];
    }
    return this.relays.terminal(rec);
  }

  /** The record of a kernel once no restart is in progress; counts as use. */
  async ready(id: string): Promise<KernelRecord> {
    await this.creating.get(id)?.catch(() => undefined); // only waits for it to settle: its failure is answered to its own caller
    const rec = this.kernels.get(id);
    if (!rec || rec.state === 'destroying') throw new KernelNotFoundError(id);
    await rec.busy?.catch(() => undefined); // only waits for it to settle: its failure is answered to its own caller
    if (!this.kernels.has(id)) throw new KernelNotFoundError(id);
    this.touch(rec);
    return rec;
  }

  private touch(rec: KernelRecord): void {
    rec.lastUsed = Date.now();
  }

  private info(rec: KernelRecord): KernelInfo {
    return kernelInfo(rec, this.deps.kernelHost);
  }

  /**
   * Rebuilds the registry from the containers carrying this agent's label:
   * running ones are adopted as they are (ports, cores, limits), dead ones
   * removed and reported once a sink is known, and scratch homes that belong
   * to no kernel removed.
   */
  async adopt(): Promise<void> {
    await adoptKernels({ deps: this.deps, cores: this.cores, memory: this.memory, kernels: this.kernels, reports: this.pendingReports });
  }

  /** Sends the terminations found by adopt(); called when an event sink appears. */
  flushReports(): void {
    for (const r of this.pendingReports.splice(0)) this.deps.emit('kernel_terminated', r);
  }

  /** Starts the idle reaper and the watch for containers that die by themselves (src/kernels/watch.ts). */
  startBackground(): void {
    this.watch.start();
    this.selfSync.start();
  }

  /** The agent is stopping: calls waiting on runs answer now with `continued`, for the manager to continue on the restarted agent. */
  drain(): void {
    this.relays.drainAll();
  }

  /** Stops the background work and closes the relays; kernels keep running (a clean agent shutdown does not kill them). */
  close(): void {
    this.closed = true;
    this.sync.close();
    this.selfSync.stop();
    this.watch.stop();
    this.relays.closeAll();
  }
}
