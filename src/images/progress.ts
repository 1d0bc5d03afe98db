/**
 * PullProgress folds Docker's JSON progress messages of one pull (the lines
 * of `POST /images/create`) or push (src/images/commit.ts) into bytes done and bytes total, per layer and
 * in all. The agent's `image_pull_progress` events, `list_pulls` and
 * agentctl's progress bar all read this one aggregation. `Throttle` lets
 * an update through at most once per interval.
 */
import type { DockerProgressMessage } from '../adapters/docker-images.js';

/** One layer of a pull. */
export interface LayerProgress {
  id: string;
  /** Docker's last status for it: `Waiting`, `Downloading`, `Extracting`, `Pull complete`, `Already exists`... */
  status: string;
  /** Compressed bytes downloaded. */
  done: number;
  /** Compressed size, 0 while unknown. */
  total: number;
}

/** A pull as seen so far. */
export interface PullSnapshot {
  image: string;
  bytesDone: number;
  bytesTotal: number;
  layers: LayerProgress[];
}

// Pushes (POST /images/{name}/push) tell their layers alike: Pushing with bytes, then Pushed, Layer already exists or Mounted from <repo>.
const FINISHED = new Set([
  'Download complete',
  'Verifying Checksum',
  'Extracting',
  'Pull complete',
  'Already exists',
  'Pushed',
  'Layer already exists',
]);
const MOVING = new Set(['Downloading', 'Pushing']);

export class PullProgress {
  private readonly layers = new Map<string, LayerProgress>();
  /** The error line of the stream, if Docker sent one. */
  error: string | null = null;

  /** `totalHint`: the compressed size from the manifest, used while Docker has not told every layer's size. */
  constructor(
    readonly image: string,
    private readonly totalHint = 0,
  ) {}

  /** Takes one message of the stream. */
  update(msg: DockerProgressMessage): void {
    if (msg.error || msg.errorDetail?.message) {
      this.error = msg.errorDetail?.message ?? msg.error ?? 'unknown error';
      return;
    }
    const id = msg.id;
    const status = msg.status ?? '';
    // Lines without a layer id (Pulling from..., Digest:, Status:) and the tag's own line carry no bytes.
    if (!id || !/^[0-9a-f]{12,64}$/.test(id)) return;
    let layer = this.layers.get(id);
    if (!layer) this.layers.set(id, (layer = { id, status, done: 0, total: 0 }));
    layer.status = status;
    const d = msg.progressDetail;
    if (MOVING.has(status) && d) {
      if (typeof d.total === 'number' && d.total > 0) layer.total = d.total;
      if (typeof d.current === 'number' && d.current >= 0) layer.done = Math.min(d.current, layer.total || d.current);
    } else if (FINISHED.has(status) || status.startsWith('Mounted from')) {
      if (status === 'Extracting' && d && typeof d.total === 'number' && d.total > 0 && layer.total === 0) layer.total = d.total;
      layer.done = layer.total;
    }
  }

  /** Bytes done and total in all, and each layer. */
  snapshot(): PullSnapshot {
    let done = 0;
    let total = 0;
    for (const l of this.layers.values()) {
      done += l.done;
      total += l.total;
    }
    return {
      image: this.image,
      bytesDone: done,
      bytesTotal: Math.max(total, this.totalHint, done),
      layers: [...this.layers.values()].map((l) => ({ ...l })),
    };
  }
}

/** Lets a call through at most once per `intervalMs` of the given clock. */
export class Throttle {
  private last = -Infinity;

  constructor(
    private readonly intervalMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether a call may go out now; when it may, the interval starts again. */
  ready(): boolean {
    const t = this.now();
    if (t - this.last < this.intervalMs) return false;
    this.last = t;
    return true;
  }
}
