/**
 * ImageService is the agent's room for kernel images: it composes the pull
 * queue (puller.ts), the registry client (registry.ts), the inventory
 * (inventory.ts), the book of last uses (image-use.ts), the collector under
 * disk pressure (gc.ts) and Docker's image events, and serves the kernel
 * factory (`ensure` before a create), the pool (`ensure` before a fill), the
 * RPC methods (list_images, list_pulls, pull_image, delete_image,
 * purge_images, gc_images) and the heartbeat (`heartbeatImages`). Every name a client gives is a
 * lang checked against image_prefix / image_allow_list as create does.
 */
import { errorMessage, ImageInUseError, ImageNotFoundError, ParametersError } from '../errors.js';
import type { Logger } from '../log.js';
import type { DockerImages } from '../adapters/docker-images.js';
import type { KernelImage } from '../adapters/docker.js';
import type { ImageRemoval, ImageSummary, PullSummary } from '../rpc/results.js';
import { ImageInventory, type ImageUsers } from './inventory.js';
import { ImagePuller } from './puller.js';
import { langOfImage, parseImageRef, resolveImage } from '../config/lang.js';
import { readRegistryCredentials, RegistryClient, type RegistryCredentials } from './registry.js';
import type { AgentEventName } from '../events/catalogue.js';
import { ImageUseBook } from './image-use.js';
import { ImageGc } from './gc.js';
import { ImageCommitter } from './commit.js';

/** The settings the image room reads (live). */
export interface ImageSettings {
  imagePrefix: string;
  imageAllowList: string[];
  autoPull: 'missing' | 'digest' | 'never';
  pullConcurrency: number;
  pullTimeoutSec: number;
  pullSpaceMarginBytes: number;
  pushTimeoutSec: number;
  /** Langs this node must have (the collector never removes them). */
  prepull: string[];
  imageGcHigh: number;
  imageGcLow: number;
  imageGcIntervalSec: number;
}

/** What the image room needs from the rest of the agent. */
export interface ImageServiceDeps {
  images: DockerImages;
  log: Logger;
  emit(name: AgentEventName, args: unknown[]): void;
  settings(): ImageSettings;
  /** Reads one etcd key (relative to the namespace); registry credentials live at `config/docker/registry/<host>/{username,password}`. */
  etcdGet(key: string): Promise<string | null>;
  /** The kernels held (their images are in use). */
  kernels(): ReadonlyArray<{ spec: { image: string } }>;
  /** The warm pool, whose idle containers use images too (and those being made, by `<lang>/<type>`); null before it exists. */
  pool(): {
    idle: ReadonlyMap<string, PooledImageUser>;
    creating?: ReadonlyMap<string, string>;
    drop(c: PooledImageUser, reason: string): Promise<void>;
  } | null;
  freeBytes?(dir: string): Promise<number>;
  /** Where the book of images' last uses is kept (`.image-use.json` in it). */
  scratchRoot: string;
  /** This agent's id: the first step of a commit carries it (commit.ts, `sweep`). */
  agentId: string;
}

/** What the image service needs of an idle pooled container: its image. */
export interface PooledImageUser {
  image: string;
}

export class ImageService {
  readonly puller: ImagePuller;
  readonly inventory: ImageInventory;
  readonly registry: RegistryClient;
  readonly book: ImageUseBook;
  readonly gc: ImageGc;
  /** Saves kernels as images and pushes them (commit.ts). */
  readonly committer: ImageCommitter;
  private readonly abort = new AbortController();
  private watching: Promise<void> | null = null;

  constructor(private readonly deps: ImageServiceDeps) {
    const credentials = (host: string) => this.credentials(host);
    this.registry = new RegistryClient(credentials);
    this.puller = new ImagePuller({
      images: deps.images,
      registry: this.registry,
      log: deps.log,
      emit: deps.emit,
      credentials,
      settings: deps.settings,
      freeBytes: deps.freeBytes,
    });
    this.inventory = new ImageInventory(deps.images, deps.log);
    this.book = new ImageUseBook(deps.scratchRoot, deps.log);
    this.gc = new ImageGc({
      images: deps.images,
      log: deps.log.child({ component: 'image-gc' }),
      emit: deps.emit,
      settings: deps.settings,
      book: this.book,
      inUse: () => this.inUse(),
      prepull: () => this.prepullImages(),
      pulling: (image) => this.puller.pulling(image),
      saving: (image) => this.committer.busy(image),
    });
    this.committer = new ImageCommitter({
      images: deps.images,
      log: deps.log.child({ component: 'image-commit' }),
      emit: deps.emit,
      credentials,
      settings: deps.settings,
      resolveCanonical: (canonical) => this.resolveCanonical(canonical),
      kernelImages: () => this.users().kernels,
      used: (image) => this.book.touch([image]),
      settled: (image) => this.gc.settled(image),
    });
  }

  /** Follows Docker's image events (the heartbeat's cache depends on them); the collector is started apart (`gc.start()`), once the kernels are known. */
  start(): void {
    this.watching ??= this.deps.images.watch((action) => this.inventory.onEvent(action), this.deps.log, this.abort.signal);
    void this.book.load();
    void this.committer.sweep(this.deps.agentId);
  }

  async close(): Promise<void> {
    this.abort.abort();
    this.puller.close();
    await this.gc.close();
    await this.book.flush();
    await this.watching;
  }

  /** The image a client's lang names; a ParametersError as create_kernel gives for a bad one. */
  resolve(lang: string): string {
    const s = this.deps.settings();
    try {
      return resolveImage(lang, s.imagePrefix, s.imageAllowList);
    } catch (err) {
      throw new ParametersError(errorMessage(err));
    }
  }

  /**
   * The lang of a canonical image reference (modern managers name images so):
   * one on image_allow_list is its own lang; else it must lie under
   * image_prefix and the rest is the lang. A ParametersError naming it otherwise.
   */
  resolveCanonical(canonical: string): { lang: string; image: string } {
    const s = this.deps.settings();
    const lang = langOfImage(canonical, s.imagePrefix, s.imageAllowList);
    if (lang === null) {
      throw new ParametersError(
        `image ${JSON.stringify(canonical.slice(0, 300))} is not under this agent's image_prefix ${JSON.stringify(s.imagePrefix)} nor on image_allow_list; the agent runs no other image`,
      );
    }
    return { lang, image: this.resolve(lang) };
  }

  /**
   * Makes sure an image is here before a create (or a pool fill), pulling it
   * as auto_pull says; `kernelId` gets a `kernel_pulling` event when a pull
   * is needed, and `onPull` is called before one starts. Joins a pull of the
   * image already under way.
   */
  async ensure(image: string, kernelId?: string, onPull?: () => void): Promise<void> {
    this.book.touch([image]); // before anything awaits: the collector keeps an image used after its pass began
    await this.gc.settled(image);
    const policy = this.deps.settings().autoPull;
    if (this.puller.pulling(image)) return this.pullFor(image, kernelId, onPull);
    const local = await this.deps.images.digests(image);
    if (local && policy !== 'digest') return;
    if (!local && policy === 'never') throw new ImageNotFoundError(image);
    if (local) {
      const name = image.includes('@') ? image.slice(0, image.indexOf('@')) : image.slice(0, image.lastIndexOf(':'));
      try {
        const { digest } = await this.registry.manifest(parseImageRef(image));
        if (local.includes(`${name}@${digest}`)) return;
        this.deps.log.info('the registry has a newer image for this tag; pulling it (auto_pull=digest)', { image, digest });
      } catch (err) {
        this.deps.log.warn('cannot compare the image with the registry; using the local one', { image, error: errorMessage(err) });
        return;
      }
    }
    return this.pullFor(image, kernelId, onPull);
  }

  private pullFor(image: string, kernelId?: string, onPull?: () => void): Promise<void> {
    if (kernelId) this.deps.emit('kernel_pulling', [kernelId, image]);
    onPull?.();
    return this.puller.pull(image);
  }

  /** The heartbeat's `images` list (cached until Docker reports a change). */
  heartbeatImages(): Promise<KernelImage[]> {
    const s = this.deps.settings();
    return this.inventory.kernelImages(s.imagePrefix, []);
  }

  /** list_images. */
  listImages(): Promise<ImageSummary[]> {
    const s = this.deps.settings();
    return this.inventory.list(s.imagePrefix, s.imageAllowList, this.users());
  }

  /** list_pulls. */
  listPulls(): PullSummary[] {
    return this.puller
      .list()
      .map((p) => ({ image: p.image, state: p.state, bytes_done: p.bytesDone, bytes_total: p.bytesTotal, layers: p.layers }));
  }

  /** pull_image: pulls (or joins the pull of) an image; `pulled` is false when it was already here. */
  async pullImage(lang: string): Promise<{ image: string; pulled: boolean }> {
    const image = this.resolve(lang);
    this.book.touch([image]);
    await this.gc.settled(image);
    if (!this.puller.pulling(image) && (await this.deps.images.digests(image)) !== null) return { image, pulled: false };
    await this.puller.pull(image);
    return { image, pulled: true };
  }

  /** delete_image. */
  async deleteImage(lang: string, force = false): Promise<ImageRemoval> {
    return this.remove(this.resolve(lang), force);
  }

  /** purge_images: every name is checked before anything is removed. */
  async purgeImages(langs: string[], force = false): Promise<ImageRemoval[]> {
    const images = [...new Set(langs.map((l) => this.resolve(l)))];
    const out: ImageRemoval[] = [];
    for (const image of images) {
      try {
        out.push(await this.remove(image, force));
      } catch (err) {
        out.push({ image, removed: false, error: errorMessage(err) });
      }
    }
    return out;
  }

  private async remove(image: string, force: boolean): Promise<ImageRemoval> {
    if ((await this.deps.images.digests(image)) === null)
      throw new ImageNotFoundError(image, `image ${image} is not on this node; nothing to delete`);
    const users = this.users();
    const kernels = users.kernels.filter((n) => n === image).length;
    const pooled = users.pooled.filter((n) => n === image).length;
    if (kernels > 0) {
      throw new ImageInUseError(
        `image ${image} is used by ${kernels} kernel(s) of this agent; destroy them first (force never removes a running kernel's image)`,
      );
    }
    if (this.puller.pulling(image)) throw new ImageInUseError(`image ${image} is being pulled; delete it once the pull is done`);
    if (pooled > 0) {
      if (!force)
        throw new ImageInUseError(`image ${image} is used by ${pooled} idle pooled container(s); pass force to remove them with it`);
      const pool = this.deps.pool();
      for (const c of [...(pool?.idle.values() ?? [])]) if (c.image === image) await pool!.drop(c, 'its image is being deleted');
    }
    await this.deps.images.remove(image, force);
    this.deps.log.info('image deleted', { image, force, pooledRemoved: pooled });
    return { image, removed: true };
  }

  /** The image names of the kernels held and of the idle pooled containers. */
  private users(): ImageUsers {
    return {
      kernels: this.deps.kernels().map((k) => k.spec.image),
      pooled: [...(this.deps.pool()?.idle.values() ?? [])].map((c) => c.image),
    };
  }

  /** The image names kernels (any state) and pooled containers (idle or being made) use now. */
  private inUse(): Set<string> {
    const users = this.users();
    const out = new Set([...users.kernels, ...users.pooled]);
    for (const key of this.deps.pool()?.creating?.values() ?? []) {
      try {
        out.add(this.resolve(key.slice(0, key.lastIndexOf('/'))));
      } catch {
        // a pool key whose lang no longer resolves names no image of this agent
      }
    }
    return out;
  }

  /** The image names of the prepull list (a lang that does not resolve names none). */
  private prepullImages(): Set<string> {
    const out = new Set<string>();
    for (const lang of this.deps.settings().prepull) {
      try {
        out.add(this.resolve(lang));
      } catch {
        // the prepull pass reports it
      }
    }
    return out;
  }

  /** A registry's credentials from etcd, or null; never logged. */
  private async credentials(host: string): Promise<RegistryCredentials | null> {
    try {
      return await readRegistryCredentials((key) => this.deps.etcdGet(key), host);
    } catch (err) {
      this.deps.log.warn('cannot read registry credentials from etcd; pulling without them', { registry: host, error: errorMessage(err) });
      return null;
    }
  }
}
