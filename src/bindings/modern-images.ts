/**
 * The image and GPU methods of the modern table (check_and_pull,
 * purge_images, scan_gpu_alloc_map, declared in src/rpc/modern-methods.ts)
 * over the agent's image room (src/images/service.ts) and GPU books
 * (src/accelerators/gpus.ts). The 24.09.0 agent has none of the three; they
 * take the shapes of the releases after it (lablup/backend.ai's
 * `agent/server.py` on main). Modern managers name images by canonical
 * reference where 2018 ones give a lang (ImageService.resolveCanonical).
 */
import { randomUUID } from 'node:crypto';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { implement, type Binding } from '../rpc/dispatcher.js';
import { modernMethods } from '../rpc/modern-methods.js';
import type { ImageService } from '../images/service.js';
import type { GpuReport } from '../accelerators/gpus.js';
import type { ModernEventName } from '../events/catalogue.js';

/** What the modern image methods need from the agent. */
export interface ModernImageDeps {
  images: ImageService;
  /** The GPU books' report (devices and holders); null when the node has no GPU room. */
  gpus(): GpuReport[] | null;
  agentId: string;
  /** Emits a modern event (to the Redis stream when one is set). */
  emitModern(name: ModernEventName, args: unknown[]): void;
  log: Logger;
}

/** The bindings of check_and_pull, purge_images and scan_gpu_alloc_map. */
export function modernImageBindings(d: ModernImageDeps): Binding[] {
  const m = modernMethods;
  return [
    implement(m.check_and_pull, (configs) => {
      // every name is checked before any pull starts
      const wanted = Object.keys(configs).map((canonical) => ({ canonical, ...d.images.resolveCanonical(canonical) }));
      const tasks: Record<string, string> = {};
      for (const w of wanted) {
        const task = randomUUID().replace(/-/g, '');
        tasks[w.canonical] = task;
        void pullInBackground(d, w.canonical, w.image, task);
      }
      return tasks;
    }),
    implement(m.purge_images, async (canonicals, force) => {
      const responses: Array<{ image: string; error: string | null }> = [];
      const langs: string[] = [];
      for (const canonical of canonicals) {
        try {
          langs.push(d.images.resolveCanonical(canonical).lang);
        } catch (err) {
          responses.push({ image: canonical, error: errorMessage(err) });
        }
      }
      const removed = langs.length ? await d.images.purgeImages(langs, force) : [];
      for (const r of removed) responses.push({ image: r.image, error: r.removed ? null : (r.error ?? 'not removed') });
      return { responses };
    }),
    implement(m.scan_gpu_alloc_map, () => {
      const out: Record<string, string> = {};
      for (const dev of d.gpus() ?? []) {
        if (dev.kernel_id !== null && !dev.kernel_id.startsWith('pool:')) out[String(dev.index)] = '1';
      }
      return out;
    }),
  ];
}

/** One image of check_and_pull: pulled if needed, its outcome told on the stream; never rejects. */
async function pullInBackground(d: ModernImageDeps, canonical: string, image: string, task: string): Promise<void> {
  let pulled = false;
  try {
    await d.images.ensure(image, undefined, () => {
      pulled = true;
      d.emitModern('image_pull_started', [canonical, d.agentId, Date.now() / 1000]);
    });
    d.emitModern('image_pull_finished', [canonical, d.agentId, Date.now() / 1000, pulled ? null : 'Image already exists']);
    d.log.info('check_and_pull: image ready', { image, pulled, task });
  } catch (err) {
    d.emitModern('image_pull_failed', [canonical, d.agentId, errorMessage(err)]);
    d.log.warn('check_and_pull: pull failed', { image, task, error: errorMessage(err) });
  }
}
