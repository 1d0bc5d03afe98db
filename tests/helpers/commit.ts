/** Images saved from a test's kernels (src/images/commit.ts): found by their labels and removed after the test. */
import Docker from 'dockerode';
import { LABELS } from '../../src/adapters/labels.js';
import { onCleanup } from './env.js';

const docker = new Docker();

/**
 * The images made from a kernel: saved ones (`committed-from`) and, were
 * any left, intermediate commits (they carry the container's `kernel-id`).
 */
export async function imagesOfKernel(kernelId: string): Promise<Array<{ id: string; tags: string[]; saved: boolean }>> {
  const out = new Map<string, { id: string; tags: string[]; saved: boolean }>();
  for (const [label, saved] of [
    [LABELS.committedFrom, true],
    [LABELS.kernel, false],
  ] as const) {
    const list = await docker.listImages({ all: true, filters: { label: [`${label}=${kernelId}`] } });
    for (const i of list) out.set(i.Id, { id: i.Id, tags: (i.RepoTags ?? []).filter((t) => !t.endsWith(':<none>')), saved });
  }
  return [...out.values()];
}

/** Removes every image made from the kernel after the test, even when it fails (registered first, so it runs after the agents stop). */
export function removeImagesOfKernelAfterTest(kernelId: string): void {
  onCleanup(async () => {
    for (const i of await imagesOfKernel(kernelId).catch(() => [])) {
      for (const t of i.tags)
        await docker
          .getImage(t)
          .remove({ force: true })
          .catch(() => undefined);
      await docker
        .getImage(i.id)
        .remove({ force: true })
        .catch(() => undefined);
    }
  });
}
