/**
 * KernelFactory makes kernels for the kernel service: a claim of a warm
 * pooled container when one fits, else a cold create under the creation
 * bound (cores, scratch home, container, and the wait for its runner to
 * answer), rolling back every step it took when one fails. The service owns
 * the registry and decides when to create; this module does the creating.
 */
import { AgentError, DockerError, errorMessage, KernelCreationError, NoResourcesError } from '../errors.js';
import { KERNEL_PORTS } from '../adapters/docker.js';
import type { KernelInfo } from '../rpc/results.js';
import { CoresExhausted, type CpuAllocator } from './allocator.js';
import { checkPossible, MemoryExhausted, type MemoryBook } from '../node/memory.js';
import { configFilesOf, containerRequest, lastLines, prepareScratch } from '../containers/launch.js';
import { imageTraits } from '../containers/image-traits.js';
import type { Semaphore } from './semaphore.js';
import { checkMounts, type KernelSpec } from '../containers/spec.js';
import type { KernelRelays } from './relays.js';
import { kernelInfo, type KernelRecord, type KernelServiceDeps } from './record.js';
import type { PooledContainer } from '../pool/pool.js';
import { environStatement } from '../relay/runner-snippets.js';
import { takeGpus } from '../accelerators/kernel-gpus.js';
import { prepareHome, waitBootstrap } from '../containers/workspace.js';
import { refuseBadServiceLabel, servicePortsOf } from '../containers/service-ports.js';
import { homesOf } from '../scratch/homes.js';
import { refuseMusl, refuseUnservable } from '../containers/runner-env.js';
import { faultPoint } from '../util/faults.js';

/** What the factory shares with the service: its dependencies, books and relays. */
export interface FactoryContext {
  deps: KernelServiceDeps;
  cores: CpuAllocator;
  /** The memory book beside the cores: charged and released on the same paths, by kernel id. */
  memory: MemoryBook;
  /** The node's schedulable memory now (MiB), for refusing what could never fit. */
  capacityMiB(): number;
  relays: KernelRelays;
  kernels: Map<string, KernelRecord>;
  createSlots: Semaphore;
}

export class KernelFactory {
  private readonly deps: KernelServiceDeps;

  constructor(private readonly context: FactoryContext) {
    this.deps = context.deps;
  }

  /** Claims a warm pooled container that fits the spec; falls back to a cold create when none fits or the claim fails. */
  async createWarmOrCold(id: string, spec: KernelSpec): Promise<KernelInfo> {
    const homes = homesOf(this.deps);
    spec = { ...spec, scratchMiB: homes.sizeOf(spec.scratchMiB ?? null) }; // scratch_size is live: the home's size is fixed once, here
    checkPossible({ ...spec, homeMemMiB: homes.memoryCharge(spec.scratchMiB!) }, this.nodeLimits()); // a ParametersError: never fits, never retried
    await homes.checkRoom(spec.scratchMiB!); // a full disk (bytes or inodes) must not break the kernels already there
    // A warm runner has started already (no bootstrap before it), in a home that is a plain folder (hostdir only).
    // A session's kernel joins its session network at creation, which a pooled container (on the kernel network) cannot.
    const pool = spec.bootstrapScript || spec.cluster || homes.type !== 'hostdir' ? null : this.deps.pool;
    if (pool) {
      const cpuSet = this.takeCores(id, spec, null, false); // no room: NoResources, nothing taken
      const warm = pool.take(spec, cpuSet, id); // its memory charge becomes the kernel's
      if (warm) {
        try {
          return await this.claimWarm(id, spec, warm, cpuSet);
        } catch (err) {
          this.deps.log.warn('claiming a warm container failed; creating the kernel cold', { kernelId: id, error: errorMessage(err) });
        }
      } else this.releaseCores(id, cpuSet);
    }
    // A missing image is pulled (as auto_pull says) before a creation slot is taken: a long pull must not hold one.
    await this.deps.images?.ensure(spec.image, id);
    return this.context.createSlots.run(() => this.doCreate(id, spec));
  }

  /**
   * Turns a taken pooled container into a kernel: the pool binds it while the
   * runner takes the kernel's environment; on failure it is removed and
   * everything taken released. The container is renamed after the reply.
   */
  private async claimWarm(id: string, spec: KernelSpec, warm: PooledContainer, cpuSet: number[]): Promise<KernelInfo> {
    const pool = this.deps.pool!;
    const rec: KernelRecord = {
      id,
      spec: { ...spec, cpuSet, gpuSet: warm.gpuSet.length ? warm.gpuSet : null },
      traits: warm.traits,
      cpuSet,
      scratchDir: pool.homeOf(id),
      containerId: warm.containerId,
      pid: warm.pid,
      ports: warm.ports,
      createdAt: Date.now(),
      lastUsed: Date.now(),
      state: 'running',
      busy: null,
    };
    // The runner started before the claim: give it (and the terminal's shell) the kernel's environment.
    const giveEnviron = async () => {
      const environ = { ...spec.environ, ...Object.fromEntries(warm.traits.coreCountEnvs.map((n) => [n, String(cpuSet.length)])) };
      if (warm.relay) this.context.relays.adopt(rec, warm.relay); // open since the container was made: no connect here
      warm.relay = null;
      const r = await this.context.relays.relay(rec).runToEnd(environStatement(environ, !warm.traits.runner.baked), 10_000);
      if (r.exitCode !== 0) throw new Error(`the runner could not take the environment (exit code ${r.exitCode})`);
      // The terminal's old shell was hung up: the first terminal use waits for its successor.
      const printed = (r.console ?? [])
        .filter((e) => e[0] === 'stdout')
        .map((e) => String(e[1]))
        .join('');
      rec.staleShells = JSON.parse(printed.trim() || '[]') as number[];
    };
    try {
      await pool.bind(warm, id, spec, cpuSet, giveEnviron);
    } catch (err) {
      warm.relay?.close(); // the claim failed before the runner was asked anything
      this.context.relays.close(id);
      this.releaseCores(id, cpuSet);
      throw err;
    }
    this.deps.gpus?.adopt(warm.gpuSet, id); // the pooled container's devices are the kernel's now
    if (warm.traits.services.ok && warm.traits.services.services.length) {
      // The pool filled it with the image's service ports published (a bad label never makes a pooled container).
      const published = await this.deps.docker.inspect(warm.containerId).catch((err: unknown) => {
        this.deps.log.warn('could not read the published ports of a claimed pooled container; its service ports are unknown', {
          kernelId: id,
          container: warm.containerId.slice(0, 12),
          error: errorMessage(err),
        });
        return null;
      });
      rec.servicePorts = servicePortsOf(warm.traits, published?.ports ?? {});
    }
    this.context.kernels.set(id, rec);
    rec.renamed = pool.nameAsKernel(rec.containerId, spec.lang, id);
    this.deps.log.info('kernel started from the warm pool', {
      kernelId: id,
      container: rec.containerId.slice(0, 12),
      cpuSet,
      memMiB: spec.memMiB,
    });
    this.deps.emit('kernel_started', [id]);
    return kernelInfo(rec, this.deps.kernelHost);
  }

  private async doCreate(id: string, spec: KernelSpec): Promise<KernelInfo> {
    const log = this.deps.log.child({ kernelId: id });
    const undo: Array<() => Promise<void> | void> = [];
    let step = 'checking the image';
    try {
      await checkMounts(spec.mounts, this.deps.settings().vfolderRoot); // a ParametersError, before anything is taken
      const image = await this.deps.docker.image(spec.image);
      const traits = imageTraits(image.labels);
      refuseBadServiceLabel(traits, spec.image); // before anything is taken
      const s = this.deps.settings();
      refuseUnservable(traits.runner, spec.image, s.runnerEnv, s.runnerEnvProblem);
      step = 'allocating GPUs and cores';
      const grant = takeGpus(this.deps.gpus, id, spec, traits); // GPUs first: the cores follow their NUMA node
      undo.push(() => this.deps.gpus?.release(grant?.gpuSet));
      if (grant) spec = { ...spec, gpuSet: grant.gpuSet };
      const cpuSet = this.takeCores(id, spec, grant?.preferCores);
      undo.push(() => this.releaseCores(id, cpuSet));
      step = `creating the scratch home (${homesOf(this.deps).type})`;
      undo.push(async () => void (await homesOf(this.deps).remove(id))); // whatever make got to: mount, loop device, file, folder
      const scratchDir = await homesOf(this.deps).make(id, spec.scratchMiB ?? homesOf(this.deps).sizeOf(null)); // a leftover of a crash is removed first
      step = 'preparing the home (workspace template, bootstrap script)';
      await prepareHome(scratchDir, spec, this.deps.settings());
      await prepareScratch(scratchDir, spec.environ, this.deps.settings().kernelUid, configFilesOf(spec));
      await faultPoint('create.after-home-made');
      const rec: KernelRecord = {
        id,
        spec,
        traits,
        cpuSet,
        scratchDir,
        containerId: '',
        pid: null,
        ports: [],
        createdAt: Date.now(),
        lastUsed: Date.now(),
        state: 'running',
        busy: null,
        homeMemMiB: this.homeMemory(spec),
      };
      await this.launch(rec, undo, (s) => (step = s));
      rec.lastUsed = Date.now(); // idle from when it is ready, not from when the create began
      this.context.kernels.set(id, rec);
      log.info('kernel started', { container: rec.containerId.slice(0, 12), cpuSet, memMiB: spec.memMiB, ports: rec.ports });
      this.deps.emit('kernel_started', [id]);
      return kernelInfo(rec, this.deps.kernelHost);
    } catch (err) {
      for (const fn of undo.reverse()) {
        try {
          await fn();
        } catch (e) {
          log.error('rollback step failed; something may be left behind', { error: errorMessage(e) });
        }
      }
      log.warn('kernel creation failed and was rolled back', { step, error: errorMessage(err) });
      if (!(err instanceof AgentError) && rootFull(err, step, homesOf(this.deps).type))
        throw new NoResourcesError(
          `create_kernel ${id} failed while ${step}: the scratch root ${this.deps.scratchRoot} is full (${errorMessage(err)}); everything it took was released: retry when kernels are destroyed or free space`,
          { cause: err },
        );
      if (err instanceof AgentError && !(err instanceof DockerError)) throw err; // already says what to do
      throw new KernelCreationError(`create_kernel ${id} failed while ${step}: ${errorMessage(err)}; everything it took was released`, {
        cause: err,
      });
    }
  }

  /**
   * Creates and starts the container of a record, filling in its id, pid and ports; pushes its undo.
   * `replaces`: the container a restart's new one replaces, which runs on meanwhile.
   */
  async launch(rec: KernelRecord, undo: Array<() => Promise<void> | void>, at: (step: string) => void, replaces?: string): Promise<void> {
    const s = this.deps.settings();
    refuseBadServiceLabel(rec.traits, rec.spec.image);
    refuseUnservable(rec.traits.runner, rec.spec.image, s.runnerEnv, s.runnerEnvProblem);
    at('creating the container');
    const containerId = await this.deps.docker.create(
      containerRequest({
        agentId: this.deps.agentId,
        kernelId: rec.id,
        spec: rec.spec,
        cpuSet: rec.cpuSet,
        traits: rec.traits,
        scratchDir: rec.scratchDir,
        kernelUid: s.kernelUid,
        publishHost: s.publishAddr || this.deps.kernelHost,
        security: s.security,
        shmMiB: s.kernelShmMiB,
        createdAt: rec.createdAt,
        gpu: this.deps.gpus?.hostConfig(rec.spec.gpuSet, rec.cpuSet),
        replaces,
        runnerEnv: s.runnerEnv,
      }),
    );
    undo.push(() => this.deps.docker.remove(containerId));
    if (!rec.traits.runner.baked) await refuseMusl(rec.spec.image, (p) => this.deps.docker.pathExists(containerId, p));
    if (replaces) await faultPoint('restart.after-new-created');
    at('starting the container');
    await this.deps.docker.start(containerId);
    at('reading the published ports');
    const state = await this.deps.docker.inspect(containerId);
    const ports = KERNEL_PORTS.map((p) => state?.ports[p]);
    if (!state?.running || ports.some((p) => !p))
      throw new Error('the container stopped right after it started; docker logs has its output');
    Object.assign(rec, { containerId, pid: state.pid, ports: ports as number[], servicePorts: servicePortsOf(rec.traits, state.ports) });
    if (rec.spec.bootstrapScript) {
      // The entrypoint starts the runner only once the bootstrap script has finished.
      at('running the bootstrap script');
      await waitBootstrap(
        rec.scratchDir,
        s.bootstrapTimeoutSec,
        async () => (await this.deps.docker.inspect(containerId))?.running === true,
      );
    }
    at('waiting for the kernel runner');
    await this.waitForRunner(rec);
  }

  /**
   * Waits for the new container's runner to answer `status`, so that a kernel
   * whose runner cannot start (a broken environment, too little memory) is a
   * failed create rather than a kernel whose every run stays `continued`.
   */
  private async waitForRunner(rec: KernelRecord): Promise<void> {
    try {
      await this.context.relays.waitReady(rec, this.deps.settings().runnerReadyTimeoutSec * 1000);
    } catch (err) {
      const last = await lastLines(this.deps.docker, rec.containerId);
      throw new KernelCreationError(
        `create_kernel ${rec.id} failed: the kernel's runner did not come up (${errorMessage(err)}); it printed last: ${last}; everything the create took was released`,
        { cause: err },
      );
    }
  }

  /**
   * Takes a kernel's memory and cores (memory first; the cores only when not
   * `memory`: a claim moves a pooled container's charge instead); throws
   * NoResourcesError, taking nothing, when either has no room now.
   */
  takeCores(id: string, spec: KernelSpec, prefer: number[] | null = null, memory = true): number[] {
    try {
      if (memory) this.context.memory.take(id, spec.memMiB + this.homeMemory(spec)); // a memory home's size beside the limit
    } catch (err) {
      if (err instanceof MemoryExhausted) throw new NoResourcesError(`not enough memory for this kernel: ${err.message}`);
      throw err;
    }
    try {
      if (spec.cpuSet) {
        this.context.cores.claim(spec.cpuSet);
        return spec.cpuSet;
      }
      return this.context.cores.allocate(spec.cpuCount, prefer);
    } catch (err) {
      this.context.memory.release(id);
      if (err instanceof CoresExhausted) throw new NoResourcesError(`not enough CPU cores for this kernel: ${err.message}`);
      throw err;
    }
  }

  /** The MiB a new kernel's home charges to the memory book (a memory home's size, else nothing). */
  private homeMemory(spec: KernelSpec): number {
    const homes = homesOf(this.deps);
    return homes.memoryCharge(spec.scratchMiB ?? homes.sizeOf(null));
  }

  private nodeLimits(): { cores: number[]; memSlotsMiB: number; memReserveMiB: number } {
    return { cores: this.deps.cores, memSlotsMiB: this.context.capacityMiB(), memReserveMiB: this.deps.settings().memReserveMiB };
  }

  /**
   * Charges a restart's memory limit (and what its home holds: a restart
   * keeps the home) in place of the kernel's old charge (same cores);
   * refuses, changing nothing, what could never fit (ParametersError) or
   * does not fit now (NoResourcesError: the kernel runs on as it was).
   */
  chargeRestart(id: string, memMiB: number, cpuSet: number[], homeMemMiB = 0): void {
    checkPossible({ cpuCount: cpuSet.length, cpuSet, memMiB, homeMemMiB }, this.nodeLimits());
    try {
      this.context.memory.take(id, memMiB + homeMemMiB);
    } catch (err) {
      if (err instanceof MemoryExhausted)
        throw new NoResourcesError(
          `not enough memory to restart this kernel with ${memMiB} MiB: ${err.message}; the kernel runs on as it was`,
        );
      throw err;
    }
  }

  /** Puts back a kernel's memory charge as it was before {@link chargeRestart} (a restart that failed before the old container was touched). */
  restoreCharge(id: string, mib: number): void {
    this.context.memory.claim(id, mib);
  }

  /** Gives back what {@link takeCores} took. */
  releaseCores(id: string, cpuSet: readonly number[]): void {
    this.context.cores.release(cpuSet);
    this.context.memory.release(id);
  }
}

/**
 * Whether a create failed because the scratch root itself ran out of space
 * or inodes (ENOSPC, EDQUOT) while its home was made, or prepared as a
 * folder on the root (hostdir): a race past the room check, retryable like it.
 */
function rootFull(err: unknown, step: string, type: string): boolean {
  if (!step.startsWith('creating the scratch home') && !(type === 'hostdir' && step.startsWith('preparing the home'))) return false;
  return noSpace(err);
}

/** Whether an error, or one of its causes, says a file system is out of space or inodes (ENOSPC, EDQUOT). */
export function noSpace(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT' || /No space left on device|Disk quota exceeded/.test(e.message)) return true;
  }
  return false;
}
