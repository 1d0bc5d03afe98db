/**
 * File operations on a kernel's scratch home: upload_file, download_file and
 * list_files (docs/wire-contract.rst, "RPC").
 *
 * The home (`<scratch root>/<kernel id>`) is `/home/work` in the container,
 * where untrusted code may plant symlinks anywhere, and the agent is root. So
 * no whole path is ever given to the OS: every walk starts from an open
 * descriptor of the home and goes one component at a time through
 * `/proc/self/fd/<dir fd>/<name>` (Linux's stand-in for the `openat` Node
 * lacks), opening with O_NOFOLLOW. Symlinks are read and resolved here, as the
 * container sees them (an absolute target must be under `/home/work`), so a
 * link swapped in after a check cannot redirect a later step. Linux only.
 */
import { constants as BUFFER } from 'node:buffer';
import { constants as C, promises as fs, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import tar, { type Pack } from 'tar-stream';
import { AgentError, FileTooLargeError, InternalError, InvalidPathError, KernelFileNotFoundError, NoResourcesError, NoSpaceError, errorMessage } from '../errors.js';
import type { Semaphore } from './semaphore.js';
import { releasePending, releaseSoon } from '../node/release-memory.js';
import { HEADROOM_BYTES, withHeadroom } from '../wire/headroom.js';

/** FileLimits bounds what one file call may move or return. */
export interface FileLimits {
  /** Largest upload_file payload, in bytes. */
  maxUploadBytes: number;
  /** Largest download_file archive (contents plus 512 bytes of header per entry), in bytes. */
  maxDownloadBytes: number;
  /** Most entries list_files returns; the rest are left out and said so in `errors`. */
  maxListEntries: number;
}

/** DEFAULT_FILE_LIMITS are the limits used unless settings say otherwise: 100 MiB up, 500 MiB down, 10 000 entries. */
export const DEFAULT_FILE_LIMITS: FileLimits = Object.freeze({
  maxUploadBytes: 100 * 1024 * 1024,
  maxDownloadBytes: 500 * 1024 * 1024,
  maxListEntries: 10_000,
});

/** The home as the user sees it inside the container. */
const CONTAINER_HOME = '/home/work';
/** As Linux's MAXSYMLINKS: more hops than this is a loop. */
const MAX_LINK_HOPS = 40;
const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;

/**
 * Where a walk ended: the open directories from the home down (`dirs[0]` is
 * the home, `names` their names below it, `realHome` its host path) and,
 * unless the target is the last of them, the final `name` and its lstat (null
 * when absent).
 */
interface Walk { dirs: FileHandle[]; names: string[]; realHome: string; name?: string; st?: Stats | null }

/** The path of `name` inside the directory open as `dir`, resolved by the kernel from the descriptor, not from a path. */
const at = (dir: FileHandle, name: string): string => `/proc/self/fd/${dir.fd}/${name}`;
const shown = (names: readonly string[]): string => [CONTAINER_HOME, ...names].join('/');
const code = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code;

const lstatOrNull = (p: string): Promise<Stats | null> =>
  fs.lstat(p).catch((err: unknown) => {
    if (code(err) === 'ENOENT') return null;
    throw err;
  });

const CHANGED = 'changed while in use (a directory was replaced by a file or a symlink)';
/** System errors that can reach a caller, as ours; any other becomes an InternalError. */
const SYSTEM_ERRORS: Record<string, [new (message: string, options: { cause: unknown }) => AgentError, string]> = {
  ENOENT: [KernelFileNotFoundError, 'does not exist (it may have been removed meanwhile)'],
  ENOTDIR: [InvalidPathError, CHANGED],
  ELOOP: [InvalidPathError, CHANGED],
  EINVAL: [InvalidPathError, CHANGED],
  EISDIR: [InvalidPathError, 'is a directory'],
  ENAMETOOLONG: [InvalidPathError, 'has a name that is too long'],
  ENOSPC: [NoSpaceError, "cannot be written: the kernel's home is full (its file system has no space left); remove files in it first"],
  EDQUOT: [NoSpaceError, "cannot be written: the kernel's home is over its quota; remove files in it first"],
};

/**
 * ScratchFiles serves upload_file, download_file and list_files for one
 * kernel's scratch home; every path is proven to stay inside the home, and
 * a symlink that leads out of it is refused with {@link InvalidPathError}.
 */
export class ScratchFiles {
  /**
   * @param home absolute host path of the scratch home, mounted at `/home/work`.
   * @param downloads the agent's bound on downloads at once (download_concurrency), shared by every kernel; none = no bound.
   */
  constructor(
    private readonly home: string,
    private readonly limits: FileLimits,
    private readonly downloads: Semaphore | null = null,
  ) {}

  /**
   * upload_file: writes `data` at `filename` (relative to /home/work, or
   * absolute under it), creating missing parent directories (0755, owned like
   * the home so that the kernel user can use them). The data goes to a fresh
   * temporary name (O_EXCL|O_NOFOLLOW) renamed over the target, so a symlink or
   * hard link there is replaced, never written through; a symlink there that
   * leads outside the home or to nothing is refused.
   */
  async upload(filename: string, data: Buffer): Promise<void> {
    const segs = this.parse(filename, false);
    if (data.length > this.limits.maxUploadBytes) {
      throw new FileTooLargeError(`upload of ${JSON.stringify(filename)} is ${data.length} bytes, over the limit of ${this.limits.maxUploadBytes} bytes`);
    }
    await this.guard(filename, async () => {
      const w = await this.walk(filename, segs, { create: true, followLast: false });
      const dir = w.dirs.at(-1)!;
      const tmp = `.upload-${randomBytes(8).toString('hex')}.tmp`;
      let tmpLeft = false;
      try {
        if (w.st?.isDirectory()) throw new InvalidPathError(`cannot upload to ${JSON.stringify(filename)}: ${shown([...w.names, w.name!])} is a directory`);
        if (w.st?.isSymbolicLink()) {
          // Refused if it leads outside (that walk throws) or to nothing; otherwise the rename below replaces the link itself.
          const link = await this.walk(filename, [...w.names, w.name!], { followLast: true });
          await closeAll(link.dirs);
          if (link.st === null) throw new InvalidPathError(`cannot upload to ${JSON.stringify(filename)}: ${shown([...w.names, w.name!])} is a symlink to a missing file`);
        }
        const owner = await w.dirs[0]!.stat();
        const fh = await fs.open(at(dir, tmp), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW | C.O_TRUNC, 0o644);
        tmpLeft = true;
        try {
          await fh.writeFile(data);
          await fh.chmod(0o644);
          await fh.chown(owner.uid, owner.gid);
        } finally {
          await fh.close();
        }
        // The directory was reached from the home by descriptor; check that it is still there before publishing.
        const where = await fs.readlink(`/proc/self/fd/${dir.fd}`);
        if (where !== w.realHome && !where.startsWith(w.realHome + '/')) {
          throw new InvalidPathError(`cannot upload to ${JSON.stringify(filename)}: its directory was moved out of ${CONTAINER_HOME}`);
        }
        await fs.rename(at(dir, tmp), at(dir, w.name!));
        tmpLeft = false;
      } finally {
        if (tmpLeft) await fs.unlink(at(dir, tmp)).catch(() => undefined); // the upload's own error is thrown; a temp file it never made is nothing to report
        await closeAll(w.dirs);
      }
    });
  }

  /**
   * download_file: an uncompressed tar archive of the file or directory at
   * `filepath`, named relative to its parent (as `tar -C parent -c name`;
   * `/home/work` itself is archived as `work`). Symlinks are stored as links,
   * never followed; entries other than files, directories and symlinks
   * (fifos, sockets) are left out, and so are entries that vanish meanwhile.
   */
  async download(filepath: string): Promise<Buffer> {
    const segs = this.parse(filepath, true);
    if (!this.downloads) return this.makeArchive(filepath, segs);
    if (this.downloads.waiting >= MAX_WAITING_DOWNLOADS) {
      throw new NoResourcesError(`${this.downloads.waiting} downloads are waiting for one of the download_concurrency slots already; try again when they are done`);
    }
    return this.downloads.run(() => this.makeArchive(filepath, segs)).finally(releaseSoon); // the archive and its reply go once sent
  }

  /**
   * Writes the archive straight into one buffer (an {@link ArchiveBuffer}):
   * each file is read in small chunks, so the agent holds the archive once,
   * never a file's chunks beside it nor a second joined copy.
   */
  private makeArchive(filepath: string, segs: ReturnType<ScratchFiles['parse']>): Promise<Buffer> {
    return this.guard(filepath, async () => {
      const w = await this.walk(filepath, segs, { followLast: false });
      const out = new ArchiveBuffer(this.limits.maxDownloadBytes, filepath);
      const pack = tar.pack();
      const ended = new Promise<void>((resolve, reject) => pack.on('end', resolve).on('error', reject));
      pack.on('data', (c) => {
        if (!out.push(c as Buffer)) pack.destroy(out.overflow());
      });
      const budget = { left: this.limits.maxDownloadBytes };
      try {
        const dir = w.dirs.at(-1)!;
        if (w.name === undefined) await this.addEntry(pack, dir, '.', 'work', await dir.stat(), budget, filepath);
        else if (w.st) await this.addEntry(pack, dir, w.name, w.name, w.st, budget, filepath);
        else throw new KernelFileNotFoundError(`${shown([...w.names, w.name])} does not exist`);
        pack.finalize();
        await ended;
        return out.bytes();
      } finally {
        if (!pack.destroyed) pack.destroy();
        await closeAll(w.dirs);
      }
    });
  }

  /**
   * list_files: the entries of the directory at `path`. `files` is a JSON
   * array of `{filename, size, mode, ctime, mtime, atime}` where `mode` is the
   * 2018 agent's `stat.filemode()` string (e.g. `-rw-r--r--`, `drwxr-xr-x`,
   * `lrwxrwxrwx`) and times are unix seconds as floats. Entries are
   * lstat'ed: a symlink is described as itself, its target is never looked
   * at. `errors` has one line per entry that could not be read, and a line
   * when the listing was cut at `maxListEntries`; `abspath` is the requested
   * path as the container sees it (e.g. `/home/work/sub`).
   */
  async list(path: string): Promise<{ files: string; errors: string; abspath: string }> {
    const segs = this.parse(path, true);
    return this.guard(path, async () => {
      const w = await this.walk(path, segs, { followLast: true });
      try {
        if (w.name !== undefined) {
          const target = shown([...w.names, w.name]);
          if (w.st === null) throw new KernelFileNotFoundError(`${target} does not exist`);
          throw new InvalidPathError(`cannot list ${JSON.stringify(path)}: ${target} is not a directory`);
        }
        const dir = w.dirs.at(-1)!;
        const all = (await fs.readdir(`/proc/self/fd/${dir.fd}`)).sort();
        const errors: string[] = [];
        if (all.length > this.limits.maxListEntries) errors.push(`listing cut at ${this.limits.maxListEntries} of ${all.length} entries (the list limit)`);
        const files = [];
        for (const filename of all.slice(0, this.limits.maxListEntries)) {
          try {
            const st = await fs.lstat(at(dir, filename));
            files.push({ filename, size: st.size, mode: fileMode(st.mode), ctime: st.ctimeMs / 1000, mtime: st.mtimeMs / 1000, atime: st.atimeMs / 1000 });
          } catch (err) {
            errors.push(`${filename}: ${code(err) === 'ENOENT' ? 'removed while listing' : errorMessage(err)}`);
          }
        }
        return { files: JSON.stringify(files), errors: errors.join('\n'), abspath: shown(segs) };
      } finally {
        await closeAll(w.dirs);
      }
    });
  }

  /** Splits a user path into segments under the home, lexically; refuses what cannot name a place in it. */
  private parse(input: string, allowHome: boolean): string[] {
    const bad = (why: string) => new InvalidPathError(`path ${JSON.stringify(input)} ${why}`);
    if (typeof input !== 'string' || input === '') throw bad('is empty; give a path relative to /home/work');
    if (input.includes('\0')) throw bad('contains a NUL byte');
    let rest = input;
    if (input.startsWith('/')) {
      if (input !== CONTAINER_HOME && !input.startsWith(CONTAINER_HOME + '/')) throw bad(`is outside ${CONTAINER_HOME}`);
      rest = input.slice(CONTAINER_HOME.length);
    }
    const segs: string[] = [];
    for (const s of rest.split('/')) {
      if (s === '' || s === '.') continue;
      if (s !== '..') segs.push(s);
      else if (segs.pop() === undefined) throw bad(`leads out of ${CONTAINER_HOME}`);
    }
    if (!allowHome && segs.length === 0) throw bad(`names ${CONTAINER_HOME} itself, not a file in it`);
    return segs;
  }

  /**
   * Walks `segs` from the home one component at a time, opening each
   * directory with O_NOFOLLOW and resolving symlinks itself (container
   * view). With `followLast` false the last component is only lstat'ed;
   * with `create`, missing directories on the way are made.
   */
  private async walk(input: string, segs: string[], opts: { create?: boolean; followLast: boolean }): Promise<Walk> {
    const home = await fs.open(this.home, C.O_RDONLY | C.O_DIRECTORY).catch((err: unknown) => {
      throw new KernelFileNotFoundError(`the kernel's scratch home ${this.home} cannot be opened: ${errorMessage(err)}`);
    });
    const w: Walk = { dirs: [home], names: [], realHome: '' };
    // Segments still to walk; `linked` marks those that came from a symlink's target, below which nothing is created.
    const queue = segs.map((seg) => ({ seg, linked: false }));
    let hops = 0;
    let via = '';
    try {
      w.realHome = await fs.readlink(`/proc/self/fd/${home.fd}`);
      while (queue.length > 0) {
        const { seg, linked } = queue.shift()!;
        const dir = w.dirs.at(-1)!;
        const last = queue.length === 0;
        if (seg === '.') continue;
        if (seg === '..') {
          if (w.names.length === 0) throw new InvalidPathError(`path ${JSON.stringify(input)}: ${via}, which leads out of ${CONTAINER_HOME}`);
          await w.dirs.pop()!.close();
          w.names.pop();
          continue;
        }
        if (last && !opts.followLast) return { ...w, name: seg, st: await lstatOrNull(at(dir, seg)) };
        const st = await lstatOrNull(at(dir, seg));
        if (st === null && last) return { ...w, name: seg, st };
        if (st === null && (!opts.create || linked)) throw new KernelFileNotFoundError(`${shown([...w.names, seg])} does not exist`);
        if (st === null) {
          w.dirs.push(await this.makeDir(dir, seg, home));
          w.names.push(seg);
        } else if (st.isSymbolicLink()) {
          const target = await fs.readlink(at(dir, seg));
          via = `${shown([...w.names, seg])} is a symlink to ${target}`;
          if (++hops > MAX_LINK_HOPS) throw new InvalidPathError(`path ${JSON.stringify(input)}: ${via}; too many levels of symlinks`);
          let parts = target.split('/').filter((s) => s !== '');
          if (target.startsWith('/')) {
            if (parts[0] !== 'home' || parts[1] !== 'work') throw new InvalidPathError(`path ${JSON.stringify(input)}: ${via}, outside ${CONTAINER_HOME}`);
            parts = parts.slice(2);
            while (w.dirs.length > 1) await w.dirs.pop()!.close();
            w.names.length = 0;
          }
          queue.unshift(...parts.map((p) => ({ seg: p, linked: true })));
        } else if (st.isDirectory()) {
          w.dirs.push(await fs.open(at(dir, seg), DIR_FLAGS));
          w.names.push(seg);
        } else if (last) {
          return { ...w, name: seg, st };
        } else {
          throw new InvalidPathError(`path ${JSON.stringify(input)}: ${shown([...w.names, seg])} is not a directory`);
        }
      }
      return w;
    } catch (err) {
      await closeAll(w.dirs);
      throw err;
    }
  }

  /** Creates directory `name` in `dir` (0755, owned like the home) and opens it; one made concurrently is used as is. */
  private async makeDir(dir: FileHandle, name: string, home: FileHandle): Promise<FileHandle> {
    let made = true;
    await fs.mkdir(at(dir, name), 0o755).catch((err: unknown) => {
      if (code(err) !== 'EEXIST') throw err;
      made = false;
    });
    const fh = await fs.open(at(dir, name), DIR_FLAGS);
    if (made) {
      const owner = await home.stat();
      await fh.chmod(0o755);
      await fh.chown(owner.uid, owner.gid);
    }
    return fh;
  }

  /** Adds one entry (a directory with all below it) to the archive, charging 512 bytes of header plus its content to the budget. */
  private async addEntry(pack: Pack, dir: FileHandle, name: string, tarName: string, st: Stats, budget: { left: number }, input: string): Promise<void> {
    const header = { name: tarName, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtime };
    const charge = (bytes: number) => {
      budget.left -= bytes;
      if (budget.left < 0) throw new FileTooLargeError(`download of ${JSON.stringify(input)} is over the limit of ${this.limits.maxDownloadBytes} bytes`);
    };
    charge(512);
    if (st.isSymbolicLink()) {
      pack.entry({ ...header, type: 'symlink', linkname: await fs.readlink(at(dir, name)) });
    } else if (st.isDirectory()) {
      const sub = name === '.' ? dir : await fs.open(at(dir, name), DIR_FLAGS);
      try {
        pack.entry({ ...header, name: `${tarName}/`, type: 'directory' });
        for (const child of (await fs.readdir(`/proc/self/fd/${sub.fd}`)).sort()) {
          // An entry removed while the archive is made is left out, as tar does.
          const cst = await lstatOrNull(at(sub, child));
          if (cst) {
            await this.addEntry(pack, sub, child, `${tarName}/${child}`, cst, budget, input).catch((err: unknown) => {
              if (code(err) !== 'ENOENT') throw err;
            });
          }
        }
      } finally {
        if (sub !== dir) await sub.close();
      }
    } else if (st.isFile()) {
      // O_NONBLOCK: a fifo swapped in after the lstat must not hang the agent.
      const fh = await fs.open(at(dir, name), C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
      try {
        const fst = await fh.stat();
        if (!fst.isFile()) return;
        charge(fst.size);
        await new Promise<void>((resolve, reject) => {
          const sink = pack.entry({ ...header, type: 'file', size: fst.size }, (err) => (err ? reject(err) : resolve()));
          streamFile(fh, fst.size, sink).then(
            () => sink.end(undefined),
            (err: unknown) => {
              sink.destroy(err as Error);
              reject(err);
            },
          );
        });
      } finally {
        await fh.close();
      }
    }
  }

  /** Runs a file operation so that only our errors leave it: system errors are named and mapped. */
  private async guard<T>(input: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      if (err instanceof AgentError) throw err;
      const known = SYSTEM_ERRORS[code(err) ?? ''];
      if (known) throw new known[0](`path ${JSON.stringify(input)} ${known[1]}`, { cause: err });
      throw new InternalError(`file operation on path ${JSON.stringify(input)} failed: ${errorMessage(err)}`, { cause: err });
    }
  }
}

/** Downloads that may wait for a download_concurrency slot; more are refused (retryable) rather than queued without end. */
export const MAX_WAITING_DOWNLOADS = 16;
/** Bytes read from a file at a time. */
const READ_CHUNK = 256 * 1024;
/** Room in an archive's buffer beyond max_download_bytes for what the budget does not count (block padding, long-name headers, the end). */
const ARCHIVE_SLACK = 64 * 1024 * 1024;

/**
 * ArchiveBuffer is the one buffer a download's archive is written into.
 * It is allocated at its largest possible size without being filled, so the
 * system gives it pages only as they are written (its resident size is the
 * archive's), and it never grows by copying.
 */
class ArchiveBuffer {
  private readonly buf: Buffer;
  private used = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly input: string,
  ) {
    releasePending(); // the last archive's reply, sent by now, is collected before this one takes memory
    this.buf = Buffer.allocUnsafeSlow(Math.min(BUFFER.MAX_LENGTH, maxBytes + ARCHIVE_SLACK));
    this.used = HEADROOM_BYTES; // room for the reply's frame header: the archive goes out without a copy
  }

  /** Appends a chunk; false when it does not fit (the archive is over the limit). */
  push(chunk: Buffer): boolean {
    if (this.used + chunk.length > this.buf.length) return false;
    chunk.copy(this.buf, this.used);
    this.used += chunk.length;
    return true;
  }

  overflow(): FileTooLargeError {
    return new FileTooLargeError(`download of ${JSON.stringify(this.input)} is over the limit of ${this.maxBytes} bytes`);
  }

  /** The archive: a view of the buffer, no copy, with headroom before it (src/wire/headroom.ts). */
  bytes(): Buffer {
    return withHeadroom(this.buf.subarray(HEADROOM_BYTES, this.used));
  }
}

/**
 * Writes exactly `size` bytes of an open file to a tar entry, in chunks, as
 * tar does: what the file grows by after its stat is left out, and a file
 * that shrank meanwhile is padded with zeros.
 */
async function streamFile(fh: FileHandle, size: number, sink: { write(chunk: Buffer): boolean; once(event: 'drain', fn: () => void): unknown }): Promise<void> {
  let left = size;
  while (left > 0) {
    const n = Math.min(left, READ_CHUNK);
    const { bytesRead, buffer } = await fh.read(Buffer.allocUnsafe(n), 0, n, null);
    const chunk = bytesRead === 0 ? Buffer.alloc(n) : buffer.subarray(0, bytesRead);
    left -= chunk.length;
    if (!sink.write(chunk)) await new Promise<void>((resolve) => sink.once('drain', () => resolve()));
  }
}

async function closeAll(handles: FileHandle[]): Promise<void> {
  await Promise.all(handles.map((h) => h.close().catch(() => undefined))); // read-only directory descriptors: a failed close loses nothing
}

/** Python's `stat.filemode`: `-rw-r--r--`, with s/S/t/T for setuid, setgid and sticky. */
function fileMode(mode: number): string {
  const types: Record<number, string> = { [C.S_IFDIR]: 'd', [C.S_IFLNK]: 'l', [C.S_IFREG]: '-', [C.S_IFCHR]: 'c', [C.S_IFBLK]: 'b', [C.S_IFIFO]: 'p', [C.S_IFSOCK]: 's' };
  let out = types[mode & C.S_IFMT] ?? '?';
  for (let i = 0; i < 3; i++) {
    const bits = (mode >> (6 - 3 * i)) & 7;
    const special = mode & (0o4000 >> i);
    const x = bits & 1 ? (special ? 'st'[i >> 1] : 'x') : special ? 'ST'[i >> 1] : '-';
    out += (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + x;
  }
  return out;
}
