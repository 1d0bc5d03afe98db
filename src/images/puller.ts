/**
 * ImagePuller pulls images for the agent: one pull per image at a time
 * however many callers wait for it (they all get its result), at most
 * `pull_concurrency` pulls at once (the rest wait in order), each bounded by
 * `pull_timeout` and preceded by a free-space check on Docker's data root
 * against the manifest's compressed size. Progress goes out as
 * `image_pull_progress` events at most once a second; the end as
 * `image_pull_finished` or `image_pull_failed`. Registry credentials are
 * read from etcd for each pull and never logged or sent in an event.
 */
import { promises as fs } from 'node:fs';
import { AgentError, errorMessage, ImageNotFoundError, ImagePullError } from '../errors.js';
import type { Logger } from '../log.js';
import type { DockerImages, PullAuth } from '../adapters/docker-images.js';
import { PullProgress, Throttle, type PullSnapshot } from './progress.js';
import { parseImageRef } from '../config/lang.js';
import { RegistryError, type RegistryClient, type RegistryCredentials } from './registry.js';
import type { AgentEventName } from '../events/catalogue.js';

/** What the puller needs from the rest of the agent. */
export interface PullerDeps {
  images: DockerImages;
  registry: RegistryClient;
  log: Logger;
  emit(name: AgentEventName, args: unknown[]): void;
  credentials(host: string): Promise<RegistryCredentials | null>;
  settings(): { pullConcurrency: number; pullTimeoutSec: number; pullSpaceMarginBytes: number };
  /** Free bytes on the file system of a path (statfs); tests may replace it. */
  freeBytes?(dir: string): Promise<number>;
}

interface PullJob {
  done: Promise<void>;
  progress: PullProgress | null;
  state: 'queued' | 'pulling';
  abort: AbortController;
}

const GiB = 1024 ** 3;
const fmt = (n: number) => (n >= GiB ? `${(n / GiB).toFixed(2)} GiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`);

async function statfsFree(dir: string): Promise<number> {
  const s = await fs.statfs(dir);
  return s.bavail * s.bsize;
}

export class ImagePuller {
  private readonly jobs = new Map<string, PullJob>();
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private dataRoot: string | null = null;
  private closed = false;
  /** Pulls started against Docker since the agent started (for tests and metrics). */
  started = 0;
  /** The most pulls that ever ran at once. */
  peak = 0;

  constructor(private readonly deps: PullerDeps) {}

  /** Pulls an image, or joins the pull of it already under way; resolves when it is here. */
  pull(image: string): Promise<void> {
    const running = this.jobs.get(image);
    if (running) return running.done;
    const job: PullJob = { done: Promise.resolve(), progress: null, state: 'queued', abort: new AbortController() };
    job.done = this.run(image, job).finally(() => this.jobs.delete(image));
    this.jobs.set(image, job);
    return job.done;
  }

  /** Whether a pull of the image is queued or under way. */
  pulling(image: string): boolean {
    return this.jobs.has(image);
  }

  /** The pulls queued or under way, with their progress. */
  list(): Array<PullSnapshot & { state: 'queued' | 'pulling' }> {
    return [...this.jobs.entries()].map(([image, j]) => ({
      ...(j.progress?.snapshot() ?? { image, bytesDone: 0, bytesTotal: 0, layers: [] }),
      state: j.state,
    }));
  }

  /** Stops taking pulls; those queued fail, those running are cancelled. */
  close(): void {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w();
    for (const [image, j] of this.jobs) j.abort.abort(new ImagePullError(`the agent is shutting down; the pull of ${image} was cancelled`));
  }

  private async slot(): Promise<void> {
    while (this.active >= this.deps.settings().pullConcurrency && !this.closed) await new Promise<void>((r) => this.waiting.push(r));
    if (this.closed) throw new ImagePullError('the agent is shutting down; the pull was not started');
    this.active++;
    this.peak = Math.max(this.peak, this.active);
  }

  private release(): void {
    this.active--;
    this.waiting.shift()?.();
  }

  private async run(image: string, job: PullJob): Promise<void> {
    await this.slot();
    const log = this.deps.log.child({ image });
    const { pullTimeoutSec } = this.deps.settings();
    const abort = job.abort;
    let cancel: (() => void) | null = null;
    abort.signal.addEventListener('abort', () => cancel?.(), { once: true });
    const timer = setTimeout(() => {
      abort.abort(
        new ImagePullError(
          `pulling ${image} took longer than pull_timeout (${pullTimeoutSec} s) and was aborted; check the registry and the network, or raise pull_timeout`,
        ),
      );
    }, pullTimeoutSec * 1000);
    const t0 = Date.now();
    try {
      job.state = 'pulling';
      const ref = parseImageRef(image);
      const creds = await this.deps.credentials(ref.registry);
      const manifest = await this.deps.registry.manifest(ref, abort.signal).catch((err: unknown) => {
        if (abort.signal.aborted) throw abort.signal.reason;
        // The registry cannot give it: to the caller, the image is not to be had (as for an agent that never pulls).
        if (err instanceof RegistryError) {
          throw new ImageNotFoundError(
            image,
            `image ${image} is not on this node and cannot be pulled: ${err.message}; push it to the registry, ` +
              'build it (deploy/kernels/build-base.sh builds lablup/kernel-python:3-debian) or load it with docker load',
          );
        }
        throw err;
      });
      await this.checkSpace(image, manifest.compressedBytes);
      job.progress = new PullProgress(image, manifest.compressedBytes);
      log.info('pulling image', {
        registry: ref.registry,
        compressedBytes: manifest.compressedBytes,
        layers: manifest.layers,
        digest: manifest.digest,
      });
      this.started++;
      const auth: PullAuth | null = creds ? { username: creds.username, password: creds.password, serveraddress: ref.registry } : null;
      const stream = await this.deps.images.pull(image, auth);
      cancel = stream.cancel;
      if (abort.signal.aborted) stream.cancel();
      const throttle = new Throttle(1000);
      const logThrottle = new Throttle(10_000); // and in the log every 10 s, for the operator of a long (pre)pull
      for await (const msg of stream.messages) {
        job.progress.update(msg);
        if (job.progress.error) break;
        if (throttle.ready()) {
          const s = job.progress.snapshot();
          this.deps.emit('image_pull_progress', [image, s.bytesDone, s.bytesTotal]);
          if (logThrottle.ready())
            log.info('pull progress', {
              bytesDone: s.bytesDone,
              bytesTotal: s.bytesTotal,
              pct: s.bytesTotal ? Math.floor((100 * s.bytesDone) / s.bytesTotal) : 0,
            });
        }
      }
      stream.cancel();
      if (abort.signal.aborted) throw abort.signal.reason;
      if (job.progress.error) throw new ImagePullError(`Docker could not pull ${image}: ${job.progress.error}`);
      if ((await this.deps.images.digests(image)) === null)
        throw new ImagePullError(`Docker's pull of ${image} ended but the image is not there; see the dockerd log`);
      const s = job.progress.snapshot();
      this.deps.emit('image_pull_progress', [image, s.bytesTotal, s.bytesTotal]);
      this.deps.emit('image_pull_finished', [image]);
      log.info('image pulled', { seconds: (Date.now() - t0) / 1000, bytes: s.bytesTotal });
    } catch (err) {
      const e = abort.signal.aborted
        ? (abort.signal.reason as ImagePullError)
        : err instanceof AgentError
          ? err
          : new ImagePullError(`cannot pull ${image}: ${errorMessage(err)}`);
      this.deps.emit('image_pull_failed', [image, e.message]);
      log.warn('image pull failed', { error: e.message, seconds: (Date.now() - t0) / 1000 });
      throw e;
    } finally {
      clearTimeout(timer);
      cancel?.();
      this.release();
    }
  }

  /** Refuses a pull that would leave less than the margin free on Docker's data root (layers take about twice their compressed size while unpacked). */
  private async checkSpace(image: string, compressed: number): Promise<void> {
    try {
      this.dataRoot ??= await this.deps.images.dataRoot();
    } catch {
      return; // Docker's own error comes with the pull
    }
    let free: number;
    try {
      free = await (this.deps.freeBytes ?? statfsFree)(this.dataRoot);
    } catch (err) {
      this.deps.log.debug('cannot read the free space of the Docker data root; pulling without the check', {
        dataRoot: this.dataRoot,
        error: errorMessage(err),
      });
      return;
    }
    const need = compressed * 2 + this.deps.settings().pullSpaceMarginBytes;
    if (free < need) {
      throw new ImagePullError(
        `not enough free space to pull ${image}: ${this.dataRoot} has ${fmt(free)} (${free} bytes) free, and the pull needs 2 x ${fmt(compressed)} compressed ` +
          `+ ${fmt(this.deps.settings().pullSpaceMarginBytes)} margin = ${fmt(need)} (${need} bytes); free space (agentctl images rm, docker image prune) or lower pull_space_margin`,
      );
    }
  }
}
