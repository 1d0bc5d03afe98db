/**
 * File operations on a kernel's scratch home: upload_file, download_file and
 * list_files (docs/wire-contract.rst, "RPC"), as the kernel service calls
 * them. Every path is first resolved under the home by the safe walk
 * (src/scratch/safe-walk.ts: descriptors, O_NOFOLLOW, symlinks resolved as
 * the container sees them); download's tar is packed by src/kernels/archive.ts.
 * Linux only.
 */
import { constants as C, promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import {
  AgentError,
  FileTooLargeError,
  InternalError,
  InvalidPathError,
  KernelFileNotFoundError,
  NoResourcesError,
  NoSpaceError,
  errorMessage,
} from '../errors.js';
import type { Semaphore } from './semaphore.js';
import { releaseSoon } from '../node/release-memory.js';
import { packArchive } from './archive.js';
import { at, closeAll, errCode, parsePath, shown, walkHome, type VfolderMount } from '../scratch/safe-walk.js';

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
 * kernel's scratch home and its vfolders; every path is proven to stay
 * inside the home, or inside the vfolder it names (`/home/work/<folder>/...`
 * is the vfolder's host folder, as the kernel sees it), and a symlink that
 * leads out of it is refused with {@link InvalidPathError}.
 */
export class ScratchFiles {
  /**
   * @param home absolute host path of the scratch home, mounted at `/home/work`.
   * @param downloads the agent's bound on downloads at once (download_concurrency), shared by every kernel; none = no bound.
   * @param mounts the kernel's vfolders (its spec's mounts), mounted at `/home/work/<name>`.
   */
  constructor(
    private readonly home: string,
    private readonly limits: FileLimits,
    private readonly downloads: Semaphore | null = null,
    private readonly mounts: readonly VfolderMount[] = [],
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
    const segs = parsePath(filename, false);
    if (data.length > this.limits.maxUploadBytes) {
      throw new FileTooLargeError(
        `upload of ${JSON.stringify(filename)} is ${data.length} bytes, over the limit of ${this.limits.maxUploadBytes} bytes`,
      );
    }
    await this.guard(filename, async () => {
      const w = await walkHome(this.home, filename, segs, { create: true, followLast: false, mounts: this.mounts });
      const dir = w.dirs.at(-1)!;
      const tmp = `.upload-${randomBytes(8).toString('hex')}.tmp`;
      let tmpLeft = false;
      try {
        if (w.name === undefined) throw new InvalidPathError(`cannot upload to ${JSON.stringify(filename)}: ${w.top} is a vfolder`);
        const target = shown([...w.names, w.name], w.top);
        if (w.st?.isDirectory()) throw new InvalidPathError(`cannot upload to ${JSON.stringify(filename)}: ${target} is a directory`);
        if (w.st?.isSymbolicLink()) {
          // Refused if it leads outside (that walk throws) or to nothing; otherwise the rename below replaces the link itself.
          const link = await walkHome(this.home, filename, [...w.base, ...w.names, w.name], { followLast: true, mounts: this.mounts });
          await closeAll(link.dirs);
          if (link.st === null)
            throw new InvalidPathError(`cannot upload to ${JSON.stringify(filename)}: ${target} is a symlink to a missing file`);
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
          throw new InvalidPathError(`cannot upload to ${JSON.stringify(filename)}: its directory was moved out of ${w.top}`);
        }
        await fs.rename(at(dir, tmp), at(dir, w.name));
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
    const segs = parsePath(filepath, true);
    if (!this.downloads) return this.makeArchive(filepath, segs);
    if (this.downloads.waiting >= MAX_WAITING_DOWNLOADS) {
      throw new NoResourcesError(
        `${this.downloads.waiting} downloads are waiting for one of the download_concurrency slots already; try again when they are done`,
      );
    }
    return this.downloads.run(() => this.makeArchive(filepath, segs)).finally(releaseSoon); // the archive and its reply go once sent
  }

  /** Packs the archive of what `segs` names (src/kernels/archive.ts), from the directory the walk opened. */
  private makeArchive(filepath: string, segs: string[]): Promise<Buffer> {
    return this.guard(filepath, async () => {
      const w = await walkHome(this.home, filepath, segs, { followLast: false, mounts: this.mounts });
      try {
        const dir = w.dirs.at(-1)!;
        const max = this.limits.maxDownloadBytes;
        if (w.name === undefined)
          return await packArchive(dir, '.', w.names.at(-1) ?? w.top.split('/').pop()!, await dir.stat(), max, filepath);
        if (w.st) return await packArchive(dir, w.name, w.name, w.st, max, filepath);
        throw new KernelFileNotFoundError(`${shown([...w.names, w.name], w.top)} does not exist`);
      } finally {
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
    const segs = parsePath(path, true);
    return this.guard(path, async () => {
      const w = await walkHome(this.home, path, segs, { followLast: true, mounts: this.mounts });
      try {
        if (w.name !== undefined) {
          const target = shown([...w.names, w.name], w.top);
          if (w.st === null) throw new KernelFileNotFoundError(`${target} does not exist`);
          throw new InvalidPathError(`cannot list ${JSON.stringify(path)}: ${target} is not a directory`);
        }
        const dir = w.dirs.at(-1)!;
        const all = (await fs.readdir(`/proc/self/fd/${dir.fd}`)).sort();
        const errors: string[] = [];
        if (all.length > this.limits.maxListEntries)
          errors.push(`listing cut at ${this.limits.maxListEntries} of ${all.length} entries (the list limit)`);
        const files = [];
        for (const filename of all.slice(0, this.limits.maxListEntries)) {
          try {
            const st = await fs.lstat(at(dir, filename));
            files.push({
              filename,
              size: st.size,
              mode: fileMode(st.mode),
              ctime: st.ctimeMs / 1000,
              mtime: st.mtimeMs / 1000,
              atime: st.atimeMs / 1000,
            });
          } catch (err) {
            errors.push(`${filename}: ${errCode(err) === 'ENOENT' ? 'removed while listing' : errorMessage(err)}`);
          }
        }
        return { files: JSON.stringify(files), errors: errors.join('\n'), abspath: shown(segs) };
      } finally {
        await closeAll(w.dirs);
      }
    });
  }

  /** Runs a file operation so that only our errors leave it: system errors are named and mapped. */
  private async guard<T>(input: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      if (err instanceof AgentError) throw err;
      const known = SYSTEM_ERRORS[errCode(err) ?? ''];
      if (known) throw new known[0](`path ${JSON.stringify(input)} ${known[1]}`, { cause: err });
      throw new InternalError(`file operation on path ${JSON.stringify(input)} failed: ${errorMessage(err)}`, { cause: err });
    }
  }
}

/** Downloads that may wait for a download_concurrency slot; more are refused (retryable) rather than queued without end. */
export const MAX_WAITING_DOWNLOADS = 16;

/** Python's `stat.filemode`: `-rw-r--r--`, with s/S/t/T for setuid, setgid and sticky. */
function fileMode(mode: number): string {
  const types: Record<number, string> = {
    [C.S_IFDIR]: 'd',
    [C.S_IFLNK]: 'l',
    [C.S_IFREG]: '-',
    [C.S_IFCHR]: 'c',
    [C.S_IFBLK]: 'b',
    [C.S_IFIFO]: 'p',
    [C.S_IFSOCK]: 's',
  };
  let out = types[mode & C.S_IFMT] ?? '?';
  for (let i = 0; i < 3; i++) {
    const bits = (mode >> (6 - 3 * i)) & 7;
    const special = mode & (0o4000 >> i);
    const x = bits & 1 ? (special ? 'st'[i >> 1] : 'x') : special ? 'ST'[i >> 1] : '-';
    out += (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + x;
  }
  return out;
}
