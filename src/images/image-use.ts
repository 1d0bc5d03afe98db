/**
 * ImageUseBook records when each kernel image was last used on this node,
 * for the image collector's least-recently-used order (gc.ts): a create or
 * pool fill that names it, a pull, and each check that finds a kernel or
 * pooled container using it. The book is a small JSON file,
 * `<scratch root>/.image-use.json` (root's, beside the pool's claim records,
 * outside every kernel's home), written atomically after each change (one
 * write at a time; changes made during a write go in the next). A file and
 * not etcd: it is a fact about this node's Docker alone, it changes with
 * every create, and it must be readable while etcd is away; a lost or
 * unreadable file only makes every image's last use unknown (the collector
 * then takes them oldest-built first).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { writeFileAtomic } from '../util/atomic-write.js';

/** Whether a process of that pid runs (a write of another agent sharing the scratch root may be under way). */
function processLives(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The most names the book keeps (the oldest go first); a node has far fewer kernel images. */
const MAX_ENTRIES = 10_000;

export class ImageUseBook {
  readonly file: string;
  private readonly uses = new Map<string, number>();
  private loaded: Promise<void> | null = null;
  private writing: Promise<void> | null = null;
  private dirty = false;

  constructor(
    scratchRoot: string,
    private readonly log: Logger,
  ) {
    this.file = path.join(scratchRoot, '.image-use.json');
  }

  /** Reads the file once; a missing or unreadable one is an empty book (said in the log when unreadable). */
  load(): Promise<void> {
    this.loaded ??= this.sweepTemporaries().then(() => this.read());
    return this.loaded;
  }

  /** Removes the temporary files of writes that an agent's end cut short (writeFileAtomic names them `<file>.<pid>.<random>.tmp`). */
  private async sweepTemporaries(): Promise<void> {
    const dir = path.dirname(this.file);
    const base = path.basename(this.file);
    const names = await fs.readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      const m = /^(.*)\.(\d+)\.[0-9a-f]+\.tmp$/.exec(name);
      if (m?.[1] === base && !processLives(Number(m[2]))) await fs.unlink(path.join(dir, name)).catch(() => undefined);
    }
  }

  private read(): Promise<void> {
    return fs.readFile(this.file, 'utf8').then(
      (text) => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch (err) {
          this.log.warn('the image use record is not JSON; last uses start unknown', { file: this.file, error: errorMessage(err) });
          return;
        }
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return;
        for (const [name, at] of Object.entries(parsed as Record<string, unknown>)) {
          // A name that was written keeps its later use if one came before the load finished.
          if (typeof at === 'number' && Number.isFinite(at) && at > 0 && !this.uses.has(name)) this.uses.set(name, at);
        }
      },
      (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT')
          this.log.warn('cannot read the image use record; last uses start unknown', { file: this.file, error: errorMessage(err) });
      },
    );
  }

  /** When an image name was last used (ms since the epoch), or null when never recorded. */
  lastUse(image: string): number | null {
    return this.uses.get(image) ?? null;
  }

  /** Records a use of image names now (or at `at`) and writes the book. */
  touch(images: Iterable<string>, at = Date.now()): void {
    let changed = false;
    for (const image of images) {
      if ((this.uses.get(image) ?? 0) >= at) continue;
      this.uses.delete(image); // re-inserted last: the map stays in order of use for the bound below
      this.uses.set(image, at);
      changed = true;
    }
    if (!changed) return;
    while (this.uses.size > MAX_ENTRIES) this.uses.delete(this.uses.keys().next().value!);
    this.save();
  }

  /** Forgets names that no longer name a local image. */
  forget(images: Iterable<string>): void {
    let changed = false;
    for (const image of images) changed = this.uses.delete(image) || changed;
    if (changed) this.save();
  }

  /** Resolves when every change made so far is on disk (or its write failed, which is logged). */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private save(): void {
    this.dirty = true;
    if (this.writing) return;
    this.writing = (async () => {
      while (this.dirty) {
        this.dirty = false;
        const text = JSON.stringify(Object.fromEntries(this.uses));
        try {
          await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
          await writeFileAtomic(this.file, text, 0o600);
        } catch (err) {
          // The book stays right in memory; the next change tries the file again.
          this.log.warn('cannot write the image use record; the order of image collection after a restart may be off', {
            file: this.file,
            error: errorMessage(err),
          });
        }
      }
    })().finally(() => (this.writing = null));
  }
}
