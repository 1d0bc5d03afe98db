/**
 * ImageGc removes kernel images under disk pressure: every
 * `image_gc_interval` seconds it reads the usage of the file system of
 * Docker's data root (as df counts it: used / (used + available)), and when
 * it is over `image_gc_high` percent it removes unused kernel images, least
 * recently used first (image-use.ts), until usage is under `image_gc_low`.
 * `agentctl images gc` runs a pass now (down to the low watermark) or, with
 * `--dry-run`, lists what it would remove. One pass at a time; an image being
 * pulled is never removed, and a pull or create of an image waits while the
 * collector removes it ({@link ImageGc.settled}).
 *
 * An image may go only when all of these hold (docs/images.rst, "Image
 * collection"): each of its names (tags, and the `repo@digest` references
 * of the registries it came from) is a kernel image name of this agent
 * (under image_prefix or on image_allow_list) and it has no other name; it
 * carries a kernel image label (`ai.backend.*` or `io.sorna.*`); no
 * container at all, running or stopped, whoever made it, uses it; no kernel
 * of this agent (in any state) nor pooled container (idle or being made)
 * names it; it is not on the prepull list; it is not being pulled, saved
 * from a kernel or pushed; it is not an image saved from a kernel that was
 * never pushed (commit.ts: its only copy); and it was not used since the
 * pass began. The last three and the containers are
 * checked again just before each removal, and the removal itself is never
 * forced, so Docker refuses it if a container appeared in between.
 */
import { promises as fs } from 'node:fs';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { DockerImages, LocalImage } from '../adapters/docker-images.js';
import type { AgentEventName } from '../events/catalogue.js';
import type { ImageGcEntry, ImageGcResult } from '../rpc/results.js';
import { langOfImage } from '../config/lang.js';
import type { ImageUseBook } from './image-use.js';
import { Outage } from '../util/backoff.js';
import { LABELS } from '../adapters/labels.js';

/** The label namespaces of kernel images (the same as src/containers/image-traits.ts reads). */
const KERNEL_LABEL_PREFIXES = ['ai.backend.', 'io.sorna.'];

/** Whether a reference (`repo:tag` or `repo@digest`) names a kernel image of this agent: under the prefix, or on the allow list (by its repository for a digest). */
function isOwnName(ref: string, s: ImageGcSettings): boolean {
  if (langOfImage(ref, s.imagePrefix, s.imageAllowList) !== null) return true;
  const at = ref.indexOf('@');
  if (at < 0) return false;
  const repo = ref.slice(0, at);
  return s.imageAllowList.some((a) => (a.lastIndexOf(':') > a.lastIndexOf('/') ? a.slice(0, a.lastIndexOf(':')) : a) === repo);
}

/** Whether an image's labels say it is a kernel image. */
export function isKernelImage(labels: Record<string, string>): boolean {
  return Object.keys(labels).some((k) => KERNEL_LABEL_PREFIXES.some((p) => k.startsWith(p)));
}

/** The settings the collector reads (live). */
export interface ImageGcSettings {
  imagePrefix: string;
  imageAllowList: string[];
  imageGcHigh: number;
  imageGcLow: number;
  imageGcIntervalSec: number;
}

/** What the collector needs from the image room. */
export interface ImageGcDeps {
  images: DockerImages;
  log: Logger;
  emit(name: AgentEventName, args: unknown[]): void;
  settings(): ImageGcSettings;
  book: ImageUseBook;
  /** The image names this agent's kernels (any state) and pooled containers (idle or being made) use. */
  inUse(): Set<string>;
  /** The image names of the prepull list. */
  prepull(): Set<string>;
  /** Whether a pull of the image is queued or under way. */
  pulling(image: string): boolean;
  /** Whether a kernel is being saved as the image, or the image pushed (commit.ts). */
  saving(image: string): boolean;
}

/** How often the collector looks again at an interval of 0 (whether it changed). */
const IDLE_RECHECK_MS = 60_000;

/** The percent used of the file system of a path, as df counts it. */
async function usagePct(dir: string): Promise<number> {
  const s = await fs.statfs(dir);
  const used = (s.blocks - s.bfree) * s.bsize;
  const avail = s.bavail * s.bsize;
  return used + avail === 0 ? 0 : (100 * used) / (used + avail);
}

interface Planned extends ImageGcEntry {
  created: number;
}

export class ImageGc {
  /** Images the collector removed since the agent started (a metric). */
  removedTotal = 0;
  private readonly removing = new Map<string, Promise<void>>();
  private pass: Promise<ImageGcResult> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private dataRoot: string | null = null;
  /** Periodic checks that fail, and passes that cannot reach the low watermark: each said once when it starts and once when it ends. */
  private readonly failing = new Outage();
  private readonly short = new Outage();

  constructor(private readonly deps: ImageGcDeps) {}

  /** Starts the periodic check: the first at once, then every image_gc_interval seconds. */
  start(): void {
    const next = (ms: number) => {
      if (this.closed) return;
      this.timer = setTimeout(() => void tick(), ms);
      this.timer.unref();
    };
    const tick = async () => {
      const sec = this.deps.settings().imageGcIntervalSec;
      if (sec > 0 && !this.pass) {
        await this.run({ dryRun: false, manual: false }).then(
          () => {
            const ms = this.failing.recover();
            if (ms !== null) this.deps.log.info('image collection checks work again', { seconds: Math.round(ms / 1000) });
          },
          (err: unknown) => {
            if (this.failing.fail())
              this.deps.log.warn('image collection check failed; it is tried again at each check (said once until it works)', {
                error: errorMessage(err),
              });
          },
        );
      }
      next(sec > 0 ? sec * 1000 : IDLE_RECHECK_MS);
    };
    next(0);
  }

  /** Stops the checks and waits for a pass under way. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.pass?.catch(() => undefined); // its failure was reported to whoever asked for it
  }

  /** Resolves when the collector is not removing the image (a pull or create of it waits for this). */
  async settled(image: string): Promise<void> {
    for (let r = this.removing.get(image); r; r = this.removing.get(image)) await r;
  }

  /**
   * One pass. A periodic one (`manual` false) removes only when usage is over
   * image_gc_high; a manual one removes down to image_gc_low whatever the
   * usage. A dry run removes nothing and lists every image that may go, in
   * the order a pass takes them. Real passes run one at a time (a second
   * waits for the first).
   */
  run(o: { dryRun: boolean; manual: boolean }): Promise<ImageGcResult> {
    if (o.dryRun) return this.once(o);
    const prev = this.pass;
    const mine: Promise<ImageGcResult> = (async () => {
      await prev?.catch(() => undefined); // the earlier pass's failure went to its caller
      return this.once(o);
    })().finally(() => {
      if (this.pass === mine) this.pass = null;
    });
    this.pass = mine;
    return mine;
  }

  private async once(o: { dryRun: boolean; manual: boolean }): Promise<ImageGcResult> {
    const t0 = Date.now();
    const s = this.deps.settings();
    const high = s.imageGcHigh;
    const low = Math.min(s.imageGcLow, high);
    this.dataRoot ??= await this.deps.images.dataRoot();
    const root = this.dataRoot;
    await this.deps.book.load();
    this.deps.book.touch(this.deps.inUse(), t0); // what is in use now was last used now
    let usage = await usagePct(root);
    const result: ImageGcResult = {
      data_root: root,
      usage_pct: round(usage),
      usage_after_pct: round(usage),
      high_pct: high,
      low_pct: low,
      dry_run: o.dryRun,
      ran: o.manual ? usage >= low : usage > high,
      removed: [],
      kept: [],
      failed: [],
    };
    if (!result.ran && !o.dryRun) {
      if (usage < low && this.short.recover() !== null)
        this.deps.log.info('the data root is under image_gc_low again', { usagePct: round(usage), lowPct: low, dataRoot: root });
      return result;
    }
    const { candidates, kept } = await this.plan(s);
    result.kept = kept;
    if (o.dryRun) {
      result.removed = candidates.map(entry);
      return result;
    }
    this.deps.log.info('collecting kernel images', { usagePct: round(usage), highPct: high, lowPct: low, candidates: candidates.length });
    for (const c of candidates) {
      if (usage < low || this.closed) break;
      const [containerImages, ids] = await Promise.all([
        this.deps.images.containerImageIds(),
        Promise.all(c.names.map((n) => this.deps.images.idOf(n))),
      ]);
      // From here to the marks in `removing` nothing awaits: a pull or create that comes after them waits for the removal.
      const why = this.stillFree(c, t0, containerImages, ids);
      if (why) {
        result.kept.push({ image: c.image, id: c.id, reason: why });
        continue;
      }
      const gone = this.remove(c);
      const settled = gone.then(
        () => undefined,
        () => undefined,
      );
      for (const n of c.names) this.removing.set(n, settled);
      try {
        await gone;
      } catch (err) {
        result.failed.push({ image: c.image, id: c.id, error: errorMessage(err) });
        this.deps.log.warn('cannot remove an unused kernel image; it is kept', { image: c.image, id: c.id, error: errorMessage(err) });
        continue;
      } finally {
        for (const n of c.names) this.removing.delete(n);
      }
      this.removedTotal++;
      this.deps.book.forget(c.names);
      result.removed.push(entry(c));
      this.deps.emit('image_removed', [c.image, c.id, c.last_used, round(usage)]);
      this.deps.log.info('kernel image removed to free disk space', {
        image: c.image,
        id: c.id,
        lastUsed: c.last_used,
        usagePct: round(usage),
      });
      usage = await usagePct(root);
    }
    result.usage_after_pct = round(usage);
    if (usage < low) {
      if (this.short.recover() !== null)
        this.deps.log.info('the data root is under image_gc_low again', { usagePct: round(usage), lowPct: low, dataRoot: root });
    } else if (this.short.fail()) {
      this.deps.log.warn(
        'image collection could not bring the data root under image_gc_low: no unused kernel image is left to remove; ' +
          "free space another way (containers' logs and writable layers, other programs' images) or give Docker's data root more room " +
          '(said once until usage is under image_gc_low)',
        { usagePct: round(usage), lowPct: low, dataRoot: root },
      );
    }
    return result;
  }

  /** Every kernel image name of this agent: those that may go (least recently used first) and those kept, with why. */
  private async plan(s: ImageGcSettings): Promise<{ candidates: Planned[]; kept: ImageGcResult['kept'] }> {
    const [images, containerImages] = await Promise.all([this.deps.images.list(), this.deps.images.containerImageIds()]);
    const inUse = this.deps.inUse();
    const prepull = this.deps.prepull();
    const candidates: Planned[] = [];
    const kept: ImageGcResult['kept'] = [];
    for (const image of images) {
      // Tags first (the names kernels use), then digest references (all a replaced image has left).
      const names = [...image.tags.filter((t) => isOwnName(t, s)).sort(), ...image.digests.filter((d) => isOwnName(d, s)).sort()];
      if (names.length === 0) continue; // not named as this agent's kernel image: never looked at
      const why = this.keepReason(image, names, containerImages, inUse, prepull);
      if (why) {
        kept.push({ image: names[0]!, id: image.id, reason: why });
        continue;
      }
      const uses = names.map((n) => this.deps.book.lastUse(n)).filter((u): u is number => u !== null);
      candidates.push({
        image: names[0]!,
        names,
        id: image.id,
        size: image.size,
        last_used: uses.length ? Math.max(...uses) / 1000 : null,
        created: image.created,
      });
    }
    // Least recently used first; never recorded counts as oldest, then the oldest built.
    candidates.sort((a, b) => (a.last_used ?? -1) - (b.last_used ?? -1) || a.created - b.created || a.image.localeCompare(b.image));
    return { candidates, kept };
  }

  private keepReason(
    image: LocalImage,
    names: string[],
    containerImages: ReadonlySet<string>,
    inUse: ReadonlySet<string>,
    prepull: ReadonlySet<string>,
  ): string | null {
    if (!isKernelImage(image.labels)) return 'not a kernel image (no ai.backend.* or io.sorna.* label)';
    const other = [...image.tags, ...image.digests].find((t) => !names.includes(t));
    if (other !== undefined) return `also named ${other}, which is not a kernel image name of this agent`;
    if (containerImages.has(image.id)) return 'a container uses it (running or stopped)';
    if (names.some((n) => inUse.has(n))) return 'a kernel or pooled container of this agent uses it';
    if (names.some((n) => prepull.has(n))) return 'on the prepull list';
    if (names.some((n) => this.deps.pulling(n))) return 'being pulled';
    if (names.some((n) => this.deps.saving(n))) return 'being saved from a kernel or pushed';
    // A saved image has a digest name only once pushed (or pulled back): until then it is the only copy of what was installed.
    if (image.labels[LABELS.committedFrom] !== undefined && image.digests.length === 0)
      return 'saved from a kernel and never pushed (its only copy): push it, or remove it with agentctl images rm';
    return null;
  }

  /** Why an image planned for removal must stay after all (checked again just before it goes, with fresh figures from Docker), or null. */
  private stillFree(c: Planned, t0: number, containerImages: ReadonlySet<string>, ids: Array<string | null>): string | null {
    const moved = c.names.find((_, i) => ids[i] !== c.id);
    if (moved !== undefined) return `${moved} no longer names this image`;
    if (containerImages.has(c.id)) return 'a container uses it (running or stopped)';
    if (c.names.some((n) => this.deps.inUse().has(n))) return 'a kernel or pooled container of this agent uses it';
    if (c.names.some((n) => this.deps.prepull().has(n))) return 'on the prepull list';
    if (c.names.some((n) => this.deps.pulling(n))) return 'being pulled';
    if (c.names.some((n) => this.deps.saving(n))) return 'being saved from a kernel or pushed';
    if (c.names.some((n) => (this.deps.book.lastUse(n) ?? 0) >= t0)) return 'used since the pass began';
    return null;
  }

  /**
   * Removes each tag (never forced: Docker refuses the last name of an image a
   * container uses), then the image by id if it is still there (only its
   * digest references, all the agent's, are left then).
   */
  private async remove(c: Planned): Promise<void> {
    for (const n of c.names) if (!n.includes('@')) await this.deps.images.remove(n, false);
    if ((await this.deps.images.idOf(c.id)) !== null) await this.deps.images.remove(c.id, false);
  }
}

function entry(c: Planned): ImageGcEntry {
  return { image: c.image, names: c.names, id: c.id, size: c.size, last_used: c.last_used };
}

function round(pct: number): number {
  return Math.round(pct * 100) / 100;
}
