/**
 * ImageInventory answers what kernel images this node has: list_images
 * (with how many kernels and idle pooled containers use each), and the
 * heartbeat's `images` list, which it keeps in a cache rebuilt only when
 * Docker's image events say the inventory changed (a pull, tag, untag,
 * delete, load or import), never on every beat.
 */
import type { DockerImages, LocalImage } from '../adapters/docker-images.js';
import type { KernelImage } from '../adapters/docker.js';
import type { Logger } from '../log.js';
import type { ImageSummary } from '../rpc/results.js';
import { langOfImage } from '../config/lang.js';

/** Who uses which image name: kernels, and idle pooled containers. */
export interface ImageUsers {
  kernels: readonly string[];
  pooled: readonly string[];
}

/** The events of Docker's image stream that change the list of images. */
const CHANGES = new Set(['pull', 'tag', 'untag', 'delete', 'load', 'import', 'reconnect']);

export class ImageInventory {
  private cache: { prefix: string; allow: string; images: KernelImage[] } | null = null;
  /** Bumped by every change event, so a rebuild that raced one is not kept. */
  private generation = 0;
  /** How many times the heartbeat list was rebuilt from Docker (for tests). */
  rebuilds = 0;

  constructor(
    private readonly images: DockerImages,
    private readonly log: Logger,
  ) {}

  /** Docker said something about an image; a change drops the cache. */
  onEvent(action: string): void {
    if (!CHANGES.has(action)) return;
    this.generation++;
    this.cache = null;
    this.log.debug('image inventory changed', { action });
  }

  /** The heartbeat's list, `[name:tag without the prefix (or the allow-listed name), image id]`, sorted; from the cache when nothing changed. */
  async kernelImages(prefix: string, allowList: readonly string[]): Promise<KernelImage[]> {
    const allow = allowList.join(',');
    if (this.cache && this.cache.prefix === prefix && this.cache.allow === allow) return this.cache.images;
    const gen = this.generation;
    this.rebuilds++;
    const out: KernelImage[] = [];
    for (const image of await this.images.list()) {
      for (const tag of image.tags) {
        const lang = langOfImage(tag, prefix, allowList);
        if (lang !== null) out.push([lang, image.id]);
      }
    }
    out.sort((a, b) => a[0].localeCompare(b[0]));
    if (gen === this.generation) this.cache = { prefix, allow, images: out };
    return out;
  }

  /** list_images: every kernel image with its users. */
  async list(prefix: string, allowList: readonly string[], users: ImageUsers): Promise<ImageSummary[]> {
    const count = (names: readonly string[]) => {
      const m = new Map<string, number>();
      for (const n of names) m.set(n, (m.get(n) ?? 0) + 1);
      return m;
    };
    const kernels = count(users.kernels);
    const pooled = count(users.pooled);
    const out: ImageSummary[] = [];
    for (const image of await this.images.list()) {
      for (const tag of image.tags) {
        const lang = langOfImage(tag, prefix, allowList);
        if (lang === null) continue;
        const colon = tag.lastIndexOf(':');
        const name = tag.slice(0, colon);
        out.push({
          image: tag,
          lang,
          name,
          tag: tag.slice(colon + 1),
          id: image.id,
          digest: digestOf(image, name),
          size: image.size,
          created: image.created,
          kernels: kernels.get(tag) ?? 0,
          pooled: pooled.get(tag) ?? 0,
        });
      }
    }
    return out.sort((a, b) => a.image.localeCompare(b.image));
  }
}

function digestOf(image: LocalImage, name: string): string | null {
  const d = image.digests.find((x) => x.startsWith(`${name}@`)) ?? null;
  return d ? d.slice(d.indexOf('@') + 1) : null;
}
