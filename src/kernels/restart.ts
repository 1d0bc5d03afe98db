/**
 * The restart of a kernel (restart_kernel), taken out of the kernel service
 * (src/kernels/service.ts), as a transaction: the new container is made,
 * started and its runner answering on the same scratch home, cores and GPUs
 * while the old one runs on (its memory, host ports and files are taken
 * first), and only then is the old container retired. A failure before that
 * leaves the kernel running as it was; a crash at any point leaves one of the
 * two containers for re-adoption (src/kernels/adopt.ts reads the new one's
 * `replaces` label). The service hands it what it needs as a {@link RestartTarget}.
 */
import { AgentError, DockerError, errorMessage, KernelCreationError, NoResourcesError } from '../errors.js';
import type { KernelInfo, KernelStats } from '../rpc/results.js';
import { containerName, prepareScratch } from '../containers/launch.js';
import { imageTraits } from '../containers/image-traits.js';
import { checkMounts, parseKernelConfig, type KernelSpec } from '../containers/spec.js';
import { homesOf } from '../scratch/homes.js';
import { within } from './teardown.js';
import { noSpace, type KernelFactory } from './create.js';
import { faultPoint } from '../util/faults.js';
import type { KernelRelays } from './relays.js';
import type { KernelRecord, KernelServiceDeps } from './record.js';

/** What a restart needs of the kernel service: its parts, and the steps it shares with destroy. */
export interface RestartTarget {
  deps: KernelServiceDeps;
  factory: KernelFactory;
  kernels: Map<string, KernelRecord>;
  relays: KernelRelays;
  /** Whether a destroy of the kernel is under way. */
  destroying(id: string): boolean;
  /** The record of a kernel once no restart is in progress; counts as use. */
  ready(id: string): Promise<KernelRecord>;
  /** Reads the last stats of a kernel's container, then removes the container and closes its relays. */
  retireContainer(rec: KernelRecord, reason: string): Promise<KernelStats | null>;
  /** destroy_timeout in milliseconds. */
  destroyBoundMs(): number;
  /** Marks a kernel used now. */
  touch(rec: KernelRecord): void;
  /** The kernel's create_kernel answer. */
  info(rec: KernelRecord): KernelInfo;
}

/**
 * Restarts a kernel (restart_kernel; KernelService.restart delegates here): a new container on the same scratch home and cores;
 * calls on the kernel wait meanwhile. A restart that fails before the new container's runner answers leaves the kernel
 * running as it was; one that fails after the old container was retired removes the kernel and sends kernel_terminated.
 */
export async function restartKernel(
  k: RestartTarget,
  id: string,
  config: Record<string, unknown>,
  readSpec?: (s: ReturnType<KernelServiceDeps['settings']>, current: KernelSpec) => KernelSpec,
): Promise<Omit<KernelInfo, 'id' | 'kernel_host'>> {
  const rec = await k.ready(id);
  if (rec.busy) {
    // Another restart got here first: run after it (no await from here until `rec.busy` is set).
    await rec.busy.catch(() => undefined); // only waits for it to settle: its failure is answered to its own caller
    return restartKernel(k, id, config, readSpec);
  }
  const s = k.deps.settings();
  const spec = readSpec ? readSpec(s, rec.spec) : parseKernelConfig(config, s.imagePrefix, s.vfolderRoot, s.imageAllowList);
  await checkMounts(spec.mounts, s.vfolderRoot); // a bad mount is refused before the old container goes
  if (rec.busy || k.kernels.get(id) !== rec || k.destroying(id)) return restartKernel(k, id, config, readSpec); // changed meanwhile: look again
  const oldCharge = rec.spec.memMiB + (rec.homeMemMiB ?? 0);
  k.factory.chargeRestart(id, spec.memMiB, rec.cpuSet, rec.homeMemMiB); // before the old container goes (no await from here until `rec.busy`)
  const undo: Array<() => Promise<void> | void> = [];
  let retired = false;
  let step = 'checking the image';
  const work = (async () => {
    rec.state = 'restarting';
    // 1. Everything the new container needs, taken while the old one runs on.
    const image = await k.deps.docker.image(spec.image);
    const next: KernelRecord = {
      ...rec,
      // Same cores and GPUs; the same /dev/shm unless the restart's config names one.
      spec: {
        ...spec,
        cpuSet: rec.cpuSet,
        gpuSet: rec.spec.gpuSet,
        shmMiB: spec.shmMiB ?? rec.spec.shmMiB ?? null,
        cluster: rec.spec.cluster ?? null,
      },
      traits: imageTraits(image.labels),
      containerId: '',
      pid: null,
      ports: [],
      servicePorts: undefined,
      renamed: undefined,
      staleShells: undefined,
    };
    step = 'writing environ.txt';
    const movedAside = await prepareScratch(rec.scratchDir, spec.environ, s.kernelUid);
    if (movedAside.length > 0)
      k.deps.log.warn("the kernel had replaced its home's .config with something other than a folder; it was moved aside, not followed", {
        kernelId: id,
        movedAside,
      });
    await k.factory.launch(next, undo, (at) => (step = at), rec.containerId);
    await faultPoint('restart.after-new-ready');
    // 2. The new container's runner answers: the old container goes.
    step = 'retiring the old container';
    retired = true;
    const stats = await k.retireContainer(rec, 'restarting');
    k.deps.emit('kernel_terminated', [id, 'restarting', stats]);
    await faultPoint('restart.after-old-removed');
    const { containerId, pid, ports, servicePorts, spec: nextSpec, traits } = next;
    Object.assign(rec, { containerId, pid, ports, servicePorts, spec: nextSpec, traits, staleShells: undefined });
    rec.renamed = undefined;
    await k.deps.docker.rename(containerId, containerName(spec.lang, id)).catch((err: unknown) =>
      k.deps.log.warn('could not give the restarted container the kernel name; it keeps its own', {
        kernelId: id,
        error: errorMessage(err),
      }),
    );
    rec.state = 'running';
    k.deps.emit('kernel_started', [id]);
  })();
  rec.busy = work;
  try {
    await work;
  } catch (err) {
    for (const fn of undo.reverse())
      await Promise.resolve()
        .then(fn)
        .catch((e: unknown) => k.deps.log.warn('could not undo a step of a failed restart', { kernelId: id, error: errorMessage(e) }));
    if (!retired) {
      // The old container was not touched: the kernel runs on as it was, holding what it held.
      k.factory.restoreCharge(id, oldCharge);
      if (step !== 'checking the image' && step !== 'writing environ.txt' && !rec.adopted)
        // environ.txt is read when a container starts: the next start (a later restart) reads what this one runs with.
        await prepareScratch(rec.scratchDir, rec.spec.environ, s.kernelUid).catch((e: unknown) =>
          k.deps.log.warn("could not put back the kernel's environ.txt", { kernelId: id, error: errorMessage(e) }),
        );
      rec.state = 'running';
      k.deps.log.warn('a restart failed before the old container was touched; the kernel runs on as it was', {
        kernelId: id,
        step,
        error: errorMessage(err),
      });
      const why = `restart_kernel ${id} failed while ${step}: ${errorMessage(err)}; the kernel runs on as it was, with its home and files`;
      if (err instanceof NoResourcesError || noSpace(err))
        throw new NoResourcesError(`${why}: retry when resources are free`, { cause: err });
      if (err instanceof AgentError && !(err instanceof DockerError) && !(err instanceof KernelCreationError)) throw err; // already says what to do (e.g. an image not found); a restart refused so takes nothing
      throw new KernelCreationError(why, { cause: err });
    }
    // The old container could not be retired: the kernel has no container it can rely on; give back what it holds and tell the manager.
    await within(k.deps.docker.remove(rec.containerId), k.destroyBoundMs(), 'remove').catch((e: unknown) =>
      k.deps.log.error('could not remove the old container of a failed restart', { kernelId: id, error: errorMessage(e) }),
    );
    k.kernels.delete(id);
    k.relays.close(id); // and the endings kept for a successor relay that will not come
    k.factory.releaseCores(id, rec.cpuSet);
    k.deps.gpus?.release(rec.spec.gpuSet);
    await homesOf(k.deps).remove(rec.id); // logs what it could not remove
    k.deps.emit('kernel_terminated', [id, 'restarting', null]);
    throw new KernelCreationError(`restart_kernel ${id} failed while ${step}: ${errorMessage(err)}; the kernel was removed`, {
      cause: err,
    });
  } finally {
    rec.busy = null;
  }
  k.touch(rec); // idle from when the new container is ready
  const { id: _id, kernel_host: _host, ...rest } = k.info(rec);
  return rest;
}
