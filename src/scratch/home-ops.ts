/**
 * The agent's own work in a kernel's home, done as root in a folder whose
 * every entry the kernel's code may have planted: the `.config` folder and
 * its files (environ.txt, bootstrap markers), ownership, the listing of a
 * run's output files, and removal. Like the safe walk (./safe-walk.ts), all
 * of it goes from an open descriptor of the home one name at a time through
 * `/proc/self/fd/<fd>/<name>` with O_NOFOLLOW, so a symlink the kernel made is
 * handled as a link, never followed, whenever it was swapped in; ownership is
 * set with fchown on such a descriptor; files are written to a fresh name
 * (O_EXCL) and renamed into place. Linux only.
 */
import { randomBytes } from 'node:crypto';
import { constants as C, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { DIR_FLAGS, at, closeAll, errCode, lstatOrNull } from './safe-walk.js';

/** A home's folder opened through a descriptor, never through a symlink. */
export const openHome = (home: string): Promise<FileHandle> => fs.open(home, DIR_FLAGS);

/** Times a folder the kernel keeps replacing is moved aside before the agent gives up. */
const ASIDE_TRIES = 3;

/**
 * openOwnDir opens folder `name` of `dir`, made (0755) when missing, owned by
 * `uid`. Something else there (a symlink, a file: the kernel's) is renamed
 * aside to `<name>.moved-aside-<hex>` in the same folder, never followed;
 * the result says what was moved. Throws when the kernel keeps replacing it.
 */
export async function openOwnDir(dir: FileHandle, name: string, uid: number): Promise<{ fh: FileHandle; movedAside: string[] }> {
  const movedAside: string[] = [];
  for (let i = 0; i < ASIDE_TRIES; i++) {
    await fs.mkdir(at(dir, name), 0o755).catch((err: unknown) => {
      if (errCode(err) !== 'EEXIST') throw err;
    });
    try {
      const fh = await fs.open(at(dir, name), DIR_FLAGS);
      try {
        await fh.chmod(0o755);
        await fh.chown(uid, uid);
      } catch (err) {
        await fh.close();
        throw err;
      }
      return { fh, movedAside };
    } catch (err) {
      // ELOOP: a symlink (O_NOFOLLOW); ENOTDIR: a file or a link to one. Either is the kernel's; keep it, out of the way.
      if (errCode(err) !== 'ELOOP' && errCode(err) !== 'ENOTDIR') throw err;
      const aside = `${name}.moved-aside-${randomBytes(4).toString('hex')}`;
      await fs.rename(at(dir, name), at(dir, aside)); // rename acts on the link itself
      movedAside.push(aside);
    }
  }
  throw new Error(
    `${name} in the kernel's home was replaced by something other than a folder ${ASIDE_TRIES} times while the agent prepared it`,
  );
}

/**
 * writeFileIn writes `data` as file `name` of the folder open as `dir`
 * (mode, owner `uid`): to a fresh name made with O_EXCL|O_NOFOLLOW, renamed
 * over `name`, so a symlink or hard link there is replaced, never written
 * through. Not fsynced: the kernel's own container reads it.
 */
export async function writeFileIn(dir: FileHandle, name: string, data: string | Buffer, mode: number, uid: number): Promise<void> {
  const tmp = `.${name}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await fs.open(at(dir, tmp), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, mode);
  try {
    try {
      await fh.writeFile(data);
      await fh.chmod(mode);
      await fh.chown(uid, uid);
    } finally {
      await fh.close();
    }
    await fs.rename(at(dir, tmp), at(dir, name));
  } catch (err) {
    await fs.unlink(at(dir, tmp)).catch(() => undefined); // the write's own error is thrown; a temp file already gone is nothing to report
    throw err;
  }
}

/** A file of the agent's in a home's `.config` (a plain name), written beside environ.txt. */
export interface ConfigFile {
  name: string;
  data: string;
  mode: number;
}

/**
 * prepareConfig makes the home's `.config/environ.txt` (`KEY=VALUE` lines)
 * and the `files` given, and gives the home, `.config` and the files to the kernel user, all through
 * descriptors: a `.config` the kernel replaced by a symlink or a file is moved
 * aside (returned, for the log), an `environ.txt` symlink is replaced.
 */
export async function prepareConfig(
  home: string,
  environ: Record<string, string>,
  uid: number,
  files: ConfigFile[] = [],
): Promise<string[]> {
  const homeFh = await openHome(home);
  try {
    await homeFh.chown(uid, uid);
    const { fh, movedAside } = await openOwnDir(homeFh, '.config', uid);
    try {
      const lines = Object.entries(environ)
        .map(([k, v]) => `${k}=${v}\n`)
        .join('');
      await writeFileIn(fh, 'environ.txt', lines, 0o644, uid);
      for (const f of files) await writeFileIn(fh, f.name, f.data, f.mode, uid);
    } finally {
      await fh.close();
    }
    return movedAside;
  } finally {
    await homeFh.close();
  }
}

/**
 * readHomeFile is the text of the plain file at `rel` (names below the home),
 * at most `maxBytes` of it, or null when it is not there or is anything but a
 * plain file (a symlink, a fifo the kernel planted: never followed, never
 * waited on).
 */
export async function readHomeFile(home: string, rel: readonly string[], maxBytes: number): Promise<string | null> {
  const dirs: FileHandle[] = [];
  try {
    dirs.push(await openHome(home));
    for (const name of rel.slice(0, -1)) dirs.push(await fs.open(at(dirs.at(-1)!, name), DIR_FLAGS));
    const fh = await fs.open(at(dirs.at(-1)!, rel.at(-1)!), C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    try {
      if (!(await fh.stat()).isFile()) return null;
      const buf = Buffer.alloc(maxBytes);
      const { bytesRead } = await fh.read(buf, 0, maxBytes, 0);
      return buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (['ENOENT', 'ELOOP', 'ENOTDIR'].includes(errCode(err) ?? '')) return null; // not there, or not as the agent made it
    throw err;
  } finally {
    await closeAll(dirs);
  }
}

/**
 * changedOutputFiles lists the plain files under `<home>/.output` whose mtime
 * is at or after `sinceMs`, as `{name (relative to .output), size}`. The walk
 * goes through descriptors opened with O_NOFOLLOW: a `.output` or a folder in
 * it that is a symlink (or becomes one meanwhile) is not entered, and
 * nothing outside the home is listed. It stops after `limit` entries so a
 * kernel cannot stall a reply.
 */
export async function changedOutputFiles(home: string, sinceMs: number, limit = 1000): Promise<Array<{ name: string; size: number }>> {
  const out: Array<{ name: string; size: number }> = [];
  let seen = 0;
  const visit = async (dir: FileHandle, rel: string): Promise<void> => {
    const names = await fs.readdir(`/proc/self/fd/${dir.fd}`).catch(() => [] as string[]); // gone meanwhile: nothing in it
    for (const entry of names) {
      if (++seen > limit) return;
      const name = rel ? `${rel}/${entry}` : entry;
      const st = await lstatOrNull(at(dir, entry)).catch(() => null); // unreadable or removed meanwhile: not listed
      if (st?.isFile() && st.mtimeMs >= sinceMs - 5) out.push({ name, size: st.size }); // 5 ms: file system timestamp granularity
      if (!st?.isDirectory()) continue;
      const sub = await fs.open(at(dir, entry), DIR_FLAGS).catch(() => null); // swapped for a link or removed meanwhile: not entered
      if (!sub) continue;
      try {
        await visit(sub, name);
      } finally {
        await sub.close();
      }
    }
  };
  const homeFh = await openHome(home).catch(() => null); // no home (removed meanwhile): no files
  if (!homeFh) return out;
  try {
    const root = await fs.open(at(homeFh, '.output'), DIR_FLAGS).catch(() => null); // no .output folder, or not a folder: no files
    if (root) {
      try {
        await visit(root, '');
      } finally {
        await root.close();
      }
    }
  } finally {
    await homeFh.close();
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** Folders below the home that {@link homeUsage} enters; deeper ones are counted as themselves only. */
const USAGE_MAX_DEPTH = 64;

/** lstat calls of one usage walk in flight at once (libuv's thread pool has 4 threads, shared by every kernel's walk). */
const USAGE_BATCH = 16;

/**
 * homeUsage is the bytes allocated under a home (st_blocks, like `du`, so a
 * sparse file counts what it really takes), walked through descriptors
 * opened with O_NOFOLLOW (a folder swapped for a link is not entered), at
 * most `limit` entries and {@link USAGE_MAX_DEPTH} folders deep: a figure,
 * not an inventory.
 */
export async function homeUsage(home: string, limit: number): Promise<number> {
  let total = 0;
  let budget = limit;
  const visit = async (dir: FileHandle, depth: number): Promise<void> => {
    const names = (await fs.readdir(`/proc/self/fd/${dir.fd}`).catch(() => [] as string[])).slice(0, budget); // gone meanwhile: nothing
    budget -= names.length;
    // A few at a time (unreadable: not counted): a home of 100 000 files must not fill libuv's thread pool queue ahead of the
    // other kernels' stats reads (tests/security/stats-hostile-kernel.test.ts).
    const stats: Array<Awaited<ReturnType<typeof lstatOrNull>>> = [];
    for (let i = 0; i < names.length; i += USAGE_BATCH)
      stats.push(...(await Promise.all(names.slice(i, i + USAGE_BATCH).map((n) => lstatOrNull(at(dir, n)).catch(() => null)))));
    for (const [i, st] of stats.entries()) {
      if (!st) continue;
      total += st.blocks * 512;
      if (!st.isDirectory() || depth >= USAGE_MAX_DEPTH || budget <= 0) continue;
      const sub = await fs.open(at(dir, names[i]!), DIR_FLAGS).catch(() => null); // swapped for a link or removed meanwhile: not entered
      if (!sub) continue;
      try {
        await visit(sub, depth + 1);
      } finally {
        await sub.close();
      }
    }
  };
  const homeFh = await openHome(home).catch(() => null); // no home (removed meanwhile): nothing
  if (!homeFh) return 0;
  try {
    await visit(homeFh, 0);
  } finally {
    await homeFh.close();
  }
  return total;
}

/** Folders a removal holds open at once; a tree nested deeper is moved up to its top and removed from there. */
const MAX_REMOVE_DEPTH = 32;

/**
 * removeTree removes `target` (a home, or anything in the scratch root) with
 * all below it, as `rm -rf` would but never through a link: every folder is
 * opened with O_NOFOLLOW from its parent's descriptor, a symlink is unlinked
 * as itself, and a folder on another file system (a mount point) is not
 * entered and fails the removal. Missing is fine. A folder nested deeper
 * than {@link MAX_REMOVE_DEPTH} is moved up to the top folder first, so the
 * descriptors held stay bounded whatever the depth.
 */
export async function removeTree(target: string): Promise<void> {
  const parent = await fs.open(path.dirname(target), C.O_RDONLY | C.O_DIRECTORY);
  try {
    const name = path.basename(target);
    const st = await lstatOrNull(at(parent, name));
    if (st === null) return;
    if (!st.isDirectory()) return await fs.unlink(at(parent, name));
    const top = await fs.open(at(parent, name), DIR_FLAGS);
    try {
      await emptyTree({ top, dev: st.dev, movedUp: 0, active: 0 }, top, 0);
    } finally {
      await top.close();
    }
    await fs.rmdir(at(parent, name));
  } finally {
    await parent.close();
  }
}

/** Entries of one folder unlinked at once. */
const UNLINKS_AT_ONCE = 32;
/** Folders one removal empties at once (each holds a descriptor per level it is deep). */
const FOLDERS_AT_ONCE = 8;

/** What one removal shares: its top folder and device, and how many folders it moved up to the top. */
interface Removal {
  top: FileHandle;
  dev: number;
  movedUp: number;
  /** Folders being emptied in parallel now. */
  active: number;
}

/** Removes everything in the folder open as `dir`, `depth` below the removal's top. */
async function emptyTree(r: Removal, dir: FileHandle, depth: number): Promise<void> {
  // Entries made meanwhile (a kernel still writing) are met on a later pass; a few passes, then rmdir says ENOTEMPTY.
  // At the top, a pass that moved deep folders up does not count: they are what the next pass removes.
  for (let pass = 0; pass < 3;) {
    const movedBefore = r.movedUp;
    const entries = await fs.readdir(`/proc/self/fd/${dir.fd}`, { withFileTypes: true });
    if (entries.length === 0) return;
    // The entry types come with the listing (no lstat each, and files go in parallel: a home can hold many); a type that changed meanwhile fails its step harmlessly
    // (unlink of a folder: EISDIR; a folder opened O_NOFOLLOW that became a link: unlinked), and a later pass sees it again.
    const folders: string[] = [];
    for (let i = 0; i < entries.length; i += UNLINKS_AT_ONCE) {
      await Promise.all(
        entries.slice(i, i + UNLINKS_AT_ONCE).map(async (e) => {
          if (e.isDirectory())
            folders.push(e.name); // Node lstats an entry whose type the file system does not tell
          else await fs.unlink(at(dir, e.name)).catch(ignoreGoneOrSwapped);
        }),
      );
    }
    // Folders go in parallel too while the removal has fewer than FOLDERS_AT_ONCE under way, else one after another.
    const running: Array<Promise<void>> = [];
    for (const name of folders) {
      if (depth + 1 >= MAX_REMOVE_DEPTH) {
        await fs.rename(at(dir, name), at(r.top, `.deep-${randomBytes(6).toString('hex')}`)).catch(ignoreGone);
        r.movedUp++;
      } else if (r.active < FOLDERS_AT_ONCE) {
        r.active++;
        running.push(removeSubdir(r, dir, name, depth + 1).finally(() => r.active--));
      } else await removeSubdir(r, dir, name, depth + 1);
    }
    const failed = (await Promise.allSettled(running)).find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed) throw failed.reason;
    if (depth > 0 || r.movedUp === movedBefore) pass++;
  }
}

/** Removes folder `name` of `dir` and all below it; a link swapped in for it is unlinked as a link. */
async function removeSubdir(r: Removal, dir: FileHandle, name: string, depth: number): Promise<void> {
  let sub: FileHandle;
  try {
    sub = await fs.open(at(dir, name), DIR_FLAGS);
  } catch (err) {
    if (errCode(err) === 'ENOENT') return;
    if (errCode(err) === 'ELOOP' || errCode(err) === 'ENOTDIR') return await fs.unlink(at(dir, name)).catch(ignoreGoneOrSwapped);
    throw err;
  }
  try {
    if ((await sub.stat()).dev !== r.dev) throw new Error(`${name} is a mount point (another file system); it is left alone`);
    await emptyTree(r, sub, depth);
  } finally {
    await sub.close();
  }
  await fs.rmdir(at(dir, name)).catch(async (err: unknown) => {
    if (errCode(err) === 'ENOTDIR') return fs.unlink(at(dir, name)).catch(ignoreGoneOrSwapped); // swapped for a link meanwhile: that link goes
    return ignoreGone(err);
  });
}

/** Lets a removal go on past an entry that vanished meanwhile. */
function ignoreGone(err: unknown): void {
  if (errCode(err) !== 'ENOENT') throw err;
}

/** As {@link ignoreGone}, and past a link swapped for a folder meanwhile (the next pass removes that folder). */
function ignoreGoneOrSwapped(err: unknown): void {
  if (errCode(err) !== 'EISDIR' && errCode(err) !== 'EPERM') ignoreGone(err);
}
