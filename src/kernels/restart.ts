/**
 * The restart of a kernel (restart_kernel), taken out of the kernel service
 * (src/kernels/service.ts): the old container retired, a new one launched on
 * the same scratch home, cores and GPUs, and on failure the kernel removed
 * with everything it held. The service hands it what it needs as a
 * {@link RestartTarget}.
 */
import { errorMessage, KernelCreationError } from '../errors.js';
import type { KernelInfo, KernelStats } from '../rpc/results.js';
import { prepareScratch } from '../containers/launch.js';
import { imageTraits } from '../containers/image-traits.js';
import { checkMounts, parseKernelConfig, type KernelSpec } from '../containers/spec.js';
import { homesOf } from '../scratch/homes.js';
import { within } from './teardown.js';
import type { KernelFactory } from './create.js';
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
 * calls on the kernel wait meanwhile. A failed restart removes the kernel.
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
  k.factory.chargeRestart(id, spec.memMiB, rec.cpuSet); // before the old container goes (no await from here until `rec.busy`)
  const undo: Array<() => Promise<void> | void> = [];
  const work = (async () => {
    rec.state = 'restarting';
    const stats = await k.retireContainer(rec, 'restarting');
    k.deps.emit('kernel_terminated', [id, 'restarting', stats]);
    const image = await k.deps.docker.image(spec.image);
    Object.assign(rec, { spec: { ...spec, cpuSet: rec.cpuSet, gpuSet: rec.spec.gpuSet }, traits: imageTraits(image.labels) }); // same cores and GPUs
    const movedAside = await prepareScratch(rec.scratchDir, spec.environ, s.kernelUid);
    if (movedAside.length > 0)
      k.deps.log.warn("the kernel had replaced its home's .config with something other than a folder; it was moved aside, not followed", {
        kernelId: id,
        movedAside,
      });
    await k.factory.launch(rec, undo, () => undefined);
    rec.state = 'running';
    k.deps.emit('kernel_started', [id]);
  })();
  rec.busy = work;
  try {
    await work;
  } catch (err) {
    // Remove what the restart made, and the old container if removing it was what failed;
    // then the kernel has no container: give back what it holds and tell the manager.
    for (const fn of undo.reverse())
      await Promise.resolve()
        .then(fn)
        .catch((e: unknown) => k.deps.log.warn('could not undo a step of a failed restart', { kernelId: id, error: errorMessage(e) }));
    await within(k.deps.docker.remove(rec.containerId), k.destroyBoundMs(), 'remove').catch((e: unknown) =>
      k.deps.log.error('could not remove the old container of a failed restart', { kernelId: id, error: errorMessage(e) }),
    );
    k.kernels.delete(id);
    k.relays.close(id); // and the endings kept for a successor relay that will not come
    k.factory.releaseCores(id, rec.cpuSet);
    k.deps.gpus?.release(rec.spec.gpuSet);
    await homesOf(k.deps).remove(rec.id); // logs what it could not remove
    k.deps.emit('kernel_terminated', [id, 'restarting', null]);
    throw new KernelCreationError(`restart_kernel ${id} failed: ${errorMessage(err)}; the kernel was removed`, { cause: err });
  } finally {
    rec.busy = null;
  }
  k.touch(rec); // idle from when the new container is ready
  const { id: _id, kernel_host: _host, ...rest } = k.info(rec);
  return rest;
}
