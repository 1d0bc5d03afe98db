/**
 * The kernel service's one call into the GPU books: the devices a kernel
 * spec asks for, or a clear refusal (nothing taken) when the agent has no
 * GPU service at all.
 */
import { NoResourcesError } from '../errors.js';
import type { GpuGrant, GpuService, GpuTraits } from './gpus.js';

/** Takes the GPUs of a spec for kernel `id`; null when it asks for none. */
export function takeGpus(
  gpus: GpuService | null | undefined,
  id: string,
  spec: { gpuCount: number; gpuSet: number[] | null; image: string },
  traits: GpuTraits,
): GpuGrant | null {
  if (!gpus) {
    if (spec.gpuCount > 0 || spec.gpuSet?.length)
      throw new NoResourcesError('this node has no usable GPU (the agent runs without GPU detection)');
    return null;
  }
  return gpus.take(spec, id, traits);
}
