/**
 * The methods that save a kernel as an image and push it (docs/images.rst,
 * "Saving a kernel as an image"), bound to the kernel service (which kernel,
 * which container) and the image room's committer (src/images/commit.ts):
 * commit_kernel, get_commit_status and push_image of the 2018 table
 * (beyond), and commit, get_commit_status and push_image of the modern one
 * in 24.09's shapes (background tasks whose end bgtask_done / bgtask_failed
 * tell).
 */
import { randomUUID } from 'node:crypto';
import { errorMessage, ParametersError } from '../errors.js';
import type { Logger } from '../log.js';
import { implement, type Binding } from '../rpc/dispatcher.js';
import { methods } from '../rpc/methods.js';
import { modernMethods } from '../rpc/modern-methods.js';
import type { KernelService } from '../kernels/service.js';
import { canonicalOfImageRef } from '../kernels/modern-spec.js';
import type { ImageService } from '../images/service.js';
import { checkExtraLabels, type CommitSource } from '../images/commit.js';
import type { RegistryCredentials } from '../images/registry.js';
import type { ModernEventName } from '../events/catalogue.js';

/** The container and image of a held kernel, for a commit. */
async function sourceOf(kernels: KernelService, id: string): Promise<CommitSource> {
  const rec = await kernels.ready(id);
  return { kernelId: rec.id, containerId: rec.containerId, image: rec.spec.image };
}

/** commit_kernel, get_commit_status and push_image of the 2018 table. */
export function commitBindings(kernels: KernelService, images: ImageService): Binding[] {
  const c = images.committer;
  return [
    implement(methods.commit_kernel, async (id, image, wait, extra) => {
      const labels = checkExtraLabels(extra ?? {});
      const { image: name, done } = await c.begin(await sourceOf(kernels, id), image, labels);
      if (!wait) return { kernel: id, image: name, status: 'ongoing' as const, image_id: null };
      const made = await done;
      return { kernel: id, image: made.image, status: 'ready' as const, image_id: made.image_id };
    }),
    implement(methods.get_commit_status, (id) => ({ kernel: id, ...c.status(id) })),
    implement(methods.push_image, (image) => images.committer.push(image)),
  ];
}

/** What the modern commit methods need besides the kernels and images. */
export interface ModernCommitDeps {
  kernels: KernelService;
  images: ImageService;
  emitModern(name: ModernEventName, args: unknown[]): void;
  log: Logger;
}

/** commit, get_commit_status and push_image of the modern table. */
export function modernCommitBindings(d: ModernCommitDeps): Binding[] {
  const m = modernMethods;
  const c = d.images.committer;
  /** Runs a background task; its end goes out as bgtask_done or bgtask_failed. */
  const task = (what: string, work: Promise<unknown>): string => {
    const id = randomUUID();
    work.then(
      () => d.emitModern('bgtask_done', [id, null]),
      (err: unknown) => {
        d.log.warn(`${what} failed`, { task: id, error: errorMessage(err) });
        d.emitModern('bgtask_failed', [id, errorMessage(err)]);
      },
    );
    return id;
  };
  return [
    implement(m.get_commit_status, (id) => ({ kernel: id, status: c.status(id).status })),
    implement(m.commit, async (id, _subdir, canonical, filename, extra) => {
      if (filename)
        throw new ParametersError('saving a kernel to a file (filename) is not supported by this agent; give canonical, an image name');
      if (!canonical) throw new ParametersError('commit needs canonical: the name of the image to make');
      const { done } = await c.begin(await sourceOf(d.kernels, id), canonical, checkExtraLabels(extra ?? {}));
      return { bgtask_id: task('commit', done), kernel: id, path: null };
    }),
    implement(m.push_image, (ref, conf) => {
      const canonical = typeof ref === 'string' ? ref : canonicalOfImageRef(ref as Record<string, unknown>);
      const auth: RegistryCredentials | null =
        typeof conf.username === 'string' && conf.username !== ''
          ? { username: conf.username, password: typeof conf.password === 'string' ? conf.password : '' }
          : null;
      d.images.resolveCanonical(canonical); // a name that is no kernel image of this agent is refused at once
      return { bgtask_id: task('push_image', c.push(canonical, auth)), canonical };
    }),
  ];
}
