/**
 * ImageCommitter saves a kernel as an image and pushes such images to their
 * registry (docs/images.rst, "Saving a kernel as an image").
 *
 * A commit takes the kernel container's file system as Docker commits it
 * (the container paused only for that), without its home and vfolders: they
 * are bind mounts, which Docker never commits. Docker merges the container's
 * own environment (the kernel's environ, secrets included) and labels (the
 * agent's) back into a committed image whatever config it is given, so the
 * committed image is only a step: the image the caller gets is made of the
 * same layers with the source image's config (its Env, Cmd, Entrypoint,
 * User...) and labels, plus `io.compute-agent.committed-from`, by loading a
 * config of our own over the layers the engine has (DockerImages.loadConfig),
 * and the step is removed. A name is checked as pulls check theirs (under
 * image_prefix or on image_allow_list), and the agent tags over no image it
 * did not save. Pushes are deduplicated per image, bounded by push_timeout,
 * and report progress as pulls do. For the image collector a saved image is
 * a kernel image like the others, used when saved and when pushed, kept while
 * it is being saved or pushed and, until its first push, always (gc.ts).
 */
import { errorMessage, ImageCommitError, ImageInUseError, ImageNotFoundError, ImagePushError, ParametersError } from '../errors.js';
import type { Logger } from '../log.js';
import type { DockerImages, ImageConfigView, PullAuth } from '../adapters/docker-images.js';
import { LABELS } from '../adapters/labels.js';
import { parseImageRef } from '../config/lang.js';
import type { AgentEventName } from '../events/catalogue.js';
import type { RegistryCredentials } from './registry.js';
import { PullProgress, Throttle } from './progress.js';

/** What the committer needs from the rest of the agent. */
export interface CommitterDeps {
  images: DockerImages;
  log: Logger;
  emit(name: AgentEventName, args: unknown[]): void;
  /** A registry's credentials from etcd (as pulls read them), or null. */
  credentials(host: string): Promise<RegistryCredentials | null>;
  settings(): { pushTimeoutSec: number };
  /** The image a canonical name is, checked as pulls check theirs; a ParametersError otherwise. */
  resolveCanonical(canonical: string): { lang: string; image: string };
  /** The images of the kernels held. */
  kernelImages(): readonly string[];
  /** Records a use of the image in the book of last uses (image-use.ts): a saved or pushed image is the newest. */
  used(image: string): void;
  /** Resolves when the image collector is not removing the image (gc.ts). */
  settled(image: string): Promise<void>;
}

/** The kernel a commit saves. */
export interface CommitSource {
  kernelId: string;
  containerId: string;
  /** The image the kernel was made from. */
  image: string;
}

/** How the last commit of a kernel ended. */
export interface CommitOutcome {
  image: string;
  image_id: string | null;
  error: string | null;
  /** Unix seconds. */
  at: number;
}

/** What a finished commit made. */
export interface Committed {
  image: string;
  image_id: string;
}

/** What a finished push did. */
export interface Pushed {
  image: string;
  /** The registry's manifest digest, when Docker told it. */
  digest: string | null;
}

/** Extra labels a caller may put on a saved image: at most this many. */
const MAX_EXTRA_LABELS = 64;
const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$/;
const OWN_LABELS = new Set<string>(Object.values(LABELS));

/** Checks a caller's extra labels (str to str, not the agent's own keys); throws a ParametersError naming the bad one. */
export function checkExtraLabels(labels: Record<string, unknown>): Record<string, string> {
  const entries = Object.entries(labels);
  if (entries.length > MAX_EXTRA_LABELS)
    throw new ParametersError(`extra_labels has ${entries.length} labels; at most ${MAX_EXTRA_LABELS}`);
  const out: Record<string, string> = {};
  for (const [k, v] of entries) {
    if (!LABEL_KEY.test(k))
      throw new ParametersError(`extra label ${JSON.stringify(k.slice(0, 64))} is no label key (letters, digits, ".", "_", "-", "/")`);
    if (OWN_LABELS.has(k)) throw new ParametersError(`extra label ${k} is one the agent sets itself; choose another key`);
    if (typeof v !== 'string' || v.length > 1024 || /[\r\n\0]/.test(v))
      throw new ParametersError(`extra label ${k} must be a single-line str of at most 1024 characters`);
    out[k] = v;
  }
  return out;
}

export class ImageCommitter {
  /** Commits under way, by kernel id; the image each makes. */
  private readonly ongoing = new Map<string, string>();
  private readonly last = new Map<string, CommitOutcome>();
  private readonly pushes = new Map<string, Promise<Pushed>>();
  /** The first steps of the commits under way (image ids), which `sweep` leaves alone. */
  private readonly steps = new Set<string>();

  constructor(private readonly deps: CommitterDeps) {}

  /**
   * Removes the first steps of commits an earlier run of this agent was
   * stopped in (a crash, a SIGKILL between the two steps): untagged images
   * with this agent's label (Docker copies the container's labels into a
   * commit) and no `committed-from`. Never forced; a failure is logged and
   * the agent goes on.
   */
  async sweep(agentId: string): Promise<void> {
    try {
      for (const i of await this.deps.images.list()) {
        if (i.tags.length > 0 || i.labels[LABELS.agent] !== agentId || i.labels[LABELS.committedFrom] !== undefined || this.steps.has(i.id))
          continue;
        await this.deps.images.remove(i.id);
        this.deps.log.info('removed the first step of a commit cut short by a stop of the agent', {
          id: i.id,
          kernel: i.labels[LABELS.kernel],
        });
      }
    } catch (err) {
      this.deps.log.warn('cannot remove what commits cut short by a stop left; remove untagged images with this agent label by hand', {
        label: `${LABELS.agent}=${agentId}`,
        error: errorMessage(err),
      });
    }
  }

  /** Whether a kernel is being saved as the image, or the image is being pushed. */
  busy(image: string): boolean {
    return this.pushes.has(image) || [...this.ongoing.values()].includes(image);
  }

  /** Whether a commit of the kernel is under way, and how its last one ended. */
  status(kernelId: string): { status: 'ongoing' | 'ready'; last: CommitOutcome | null } {
    return { status: this.ongoing.has(kernelId) ? 'ongoing' : 'ready', last: this.last.get(kernelId) ?? null };
  }

  /**
   * Checks a commit of a kernel to `canonical` and starts it; what `begin`
   * resolves to holds the commit, which runs in the background. Refused (at
   * once, nothing started) for a name that is no kernel image of this
   * agent, an image a kernel uses, an image the agent did not save, or a
   * kernel or image already being committed.
   */
  async begin(
    src: CommitSource,
    canonical: string,
    extraLabels: Record<string, string> = {},
  ): Promise<{ image: string; done: Promise<Committed> }> {
    const { image } = this.deps.resolveCanonical(canonical);
    const ref = parseImageRef(image);
    if (ref.digest) throw new ParametersError(`image ${image} names a digest; a saved image needs a tag`);
    await this.deps.settled(image); // a previous save of this name the collector is removing goes first
    const existing = await this.deps.images.view(image);
    if (existing && existing.config.Labels?.[LABELS.committedFrom] === undefined) {
      throw new ParametersError(`image ${image} exists and was not saved by this agent; the agent never tags over it: choose another name`);
    }
    // checked after the await, so that two calls at once cannot both pass
    const busy = this.ongoing.get(src.kernelId);
    if (busy !== undefined)
      throw new ImageInUseError(`kernel ${src.kernelId} is being saved as ${busy}; wait until get_commit_status says ready`);
    if ([...this.ongoing.values()].includes(image))
      throw new ImageInUseError(`image ${image} is being saved from another kernel; choose another tag or wait`);
    if (this.deps.kernelImages().includes(image))
      throw new ImageInUseError(`image ${image} is used by a kernel of this agent; save under another tag`);
    this.ongoing.set(src.kernelId, image);
    const done = this.run(src, image, existing, extraLabels).finally(() => this.ongoing.delete(src.kernelId));
    done.catch(() => undefined); // the caller may not wait; the outcome is in status() and the events
    return { image, done };
  }

  private async run(src: CommitSource, image: string, existing: ImageConfigView | null, extra: Record<string, string>): Promise<Committed> {
    const log = this.deps.log.child({ kernel: src.kernelId, image });
    const t0 = Date.now();
    this.deps.emit('image_commit_started', [src.kernelId, image]);
    let step: string | null = null;
    /** The intermediate commit goes before the outcome is told, so that whoever hears it finds nothing of it left. */
    const dropStep = async () => {
      if (step) {
        this.steps.delete(step);
        await this.deps.images.remove(step).catch((err: unknown) =>
          log.warn('cannot remove the intermediate commit; the next start of the agent removes it', {
            id: step,
            error: errorMessage(err),
          }),
        );
      }
      step = null;
    };
    try {
      const source = await this.deps.images.view(src.image);
      if (!source)
        throw new ImageNotFoundError(src.image, `the kernel's image ${src.image} is no longer on this node; its config cannot be restored`);
      step = await this.deps.images.commitContainer(src.containerId);
      this.steps.add(step);
      const made = await this.deps.images.view(step);
      if (!made) throw new ImageCommitError(`Docker's commit of kernel ${src.kernelId} left no image`);
      if (source.layers.some((l, i) => made.layers[i] !== l)) {
        throw new ImageCommitError(
          `the commit of kernel ${src.kernelId} is not made on its image ${src.image} (the image changed under it)`,
        );
      }
      const labels: Record<string, string> = {};
      for (const [k, v] of Object.entries(source.config.Labels ?? {})) if (!k.startsWith('io.compute-agent.')) labels[k] = v;
      Object.assign(labels, extra, { [LABELS.committedFrom]: src.kernelId });
      const config = {
        architecture: source.architecture,
        os: source.os,
        created: new Date().toISOString(),
        config: { ...source.config, Labels: labels },
        rootfs: { type: 'layers', diff_ids: made.layers },
      };
      const id = await this.deps.images.loadConfig(image, config, made.layers.length);
      if (existing && existing.id !== id) {
        // the previous save of this name, now untagged: removed unless a container still uses it
        await this.deps.images
          .remove(existing.id)
          .catch((err: unknown) => log.info('the previous image of this name stays', { id: existing.id, error: errorMessage(err) }));
      }
      await dropStep();
      this.deps.used(image);
      this.last.set(src.kernelId, { image, image_id: id, error: null, at: Date.now() / 1000 });
      this.deps.emit('image_commit_finished', [src.kernelId, image, id]);
      log.info('kernel saved as an image', { id, seconds: (Date.now() - t0) / 1000 });
      return { image, image_id: id };
    } catch (err) {
      await dropStep();
      const e = new ImageCommitError(`saving kernel ${src.kernelId} as ${image} failed: ${errorMessage(err)}; nothing was left behind`, {
        cause: err,
      });
      this.last.set(src.kernelId, { image, image_id: null, error: e.message, at: Date.now() / 1000 });
      this.deps.emit('image_commit_failed', [src.kernelId, image, e.message]);
      log.warn('saving a kernel as an image failed', { error: e.message });
      throw e;
    }
  }

  /**
   * Pushes an image this agent saved to its registry, or joins the push of
   * it under way; `auth` overrides the credentials etcd has for the
   * registry (a modern manager sends its own). Refused for a name that is no
   * kernel image of this agent (image_prefix, image_allow_list) and for an
   * image the agent did not save.
   */
  async push(canonical: string, auth?: RegistryCredentials | null): Promise<Pushed> {
    const { image } = this.deps.resolveCanonical(canonical);
    const running = this.pushes.get(image);
    if (running) return running;
    const view = await this.deps.images.view(image);
    if (!view) throw new ImageNotFoundError(image, `image ${image} is not on this node; save a kernel as it first (commit)`);
    if (view.config.Labels?.[LABELS.committedFrom] === undefined)
      throw new ParametersError(`image ${image} was not saved by this agent; the agent pushes only images it saved`);
    const again = this.pushes.get(image); // another push began while this one looked
    if (again) return again;
    const job = this.runPush(image, auth ?? null).finally(() => this.pushes.delete(image));
    this.pushes.set(image, job);
    return job;
  }

  private async runPush(image: string, auth: RegistryCredentials | null): Promise<Pushed> {
    const ref = parseImageRef(image);
    const log = this.deps.log.child({ image, registry: ref.registry });
    const { pushTimeoutSec } = this.deps.settings();
    const t0 = Date.now();
    let cancel: (() => void) | null = null;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      cancel?.();
    }, pushTimeoutSec * 1000);
    try {
      const creds = auth ?? (await this.deps.credentials(ref.registry));
      const pushAuth: PullAuth | null = creds ? { username: creds.username, password: creds.password, serveraddress: ref.registry } : null;
      const stream = await this.deps.images.push(image, pushAuth);
      cancel = stream.cancel;
      if (timedOut) stream.cancel();
      const progress = new PullProgress(image);
      const throttle = new Throttle(1000);
      let digest: string | null = null;
      log.info('pushing image');
      for await (const msg of stream.messages) {
        progress.update(msg);
        if (progress.error) break;
        const aux = (msg as { aux?: { Digest?: string } }).aux;
        if (typeof aux?.Digest === 'string') digest = aux.Digest;
        if (throttle.ready()) {
          const s = progress.snapshot();
          this.deps.emit('image_push_progress', [image, s.bytesDone, s.bytesTotal]);
        }
      }
      stream.cancel();
      if (timedOut)
        throw new ImagePushError(
          `pushing ${image} took longer than push_timeout (${pushTimeoutSec} s) and was aborted; check the registry, or raise push_timeout`,
        );
      if (progress.error) throw new ImagePushError(`the registry ${ref.registry} refused the push of ${image}: ${progress.error}`);
      const s = progress.snapshot();
      this.deps.emit('image_push_progress', [image, s.bytesTotal, s.bytesTotal]);
      this.deps.used(image);
      this.deps.emit('image_push_finished', [image]);
      log.info('image pushed', { digest, seconds: (Date.now() - t0) / 1000 });
      return { image, digest };
    } catch (err) {
      const e = timedOut
        ? new ImagePushError(
            `pushing ${image} took longer than push_timeout (${pushTimeoutSec} s) and was aborted; check the registry, or raise push_timeout`,
          )
        : err instanceof ImagePushError
          ? err
          : new ImagePushError(`cannot push ${image} to ${ref.registry}: ${errorMessage(err)}`, { cause: err });
      this.deps.emit('image_push_failed', [image, e.message]);
      log.warn('image push failed', { error: e.message });
      throw e;
    } finally {
      clearTimeout(timer);
      cancel?.();
    }
  }
}
