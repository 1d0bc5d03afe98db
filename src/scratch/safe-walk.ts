/**
 * The safe walk: how a path given by a caller is resolved under a kernel's
 * scratch home (or under one of its vfolders) without ever leaving it. What
 * is then done with the place it reaches (upload, download, list) is
 * src/kernels/files.ts's; the agent's own work in a home (environ.txt, the
 * output listing, removal) is src/scratch/home-ops.ts's. It lives this low so
 * that every room that touches a home can use it.
 *
 * The home (`<scratch root>/<kernel id>`) is `/home/work` in the container,
 * where untrusted code may plant symlinks anywhere, and the agent is root. So
 * no whole path is ever given to the OS: every walk starts from an open
 * descriptor of the home and goes one component at a time through
 * `/proc/self/fd/<dir fd>/<name>` (Linux's stand-in for the `openat` Node
 * lacks), opening with O_NOFOLLOW. Symlinks are read and resolved here, as the
 * container sees them (an absolute target must be under `/home/work`), so a
 * link swapped in after a check cannot redirect a later step.
 *
 * A vfolder is mounted at `/home/work/<name>` in the container only; on the
 * host, beneath it, lies the scratch folder the mount hides. So a path whose
 * first component names a vfolder is walked from a descriptor of the
 * vfolder's host folder instead, with the same rules, and never leaves it
 * (`..` above it or a symlink out of it is refused). A symlink or `..` that
 * would reach a vfolder from the home is refused too: the walk would find
 * the hidden folder, not what the kernel sees. Linux only.
 */
import { constants as C, promises as fs, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { InvalidPathError, KernelFileNotFoundError, errorMessage } from '../errors.js';

/** CONTAINER_HOME is the home as the user sees it inside the container. */
export const CONTAINER_HOME = '/home/work';
/** As Linux's MAXSYMLINKS: more hops than this is a loop. */
const MAX_LINK_HOPS = 40;
/** DIR_FLAGS open a directory met on a walk: never through a symlink. */
export const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;

/** A vfolder of a kernel: mounted at `/home/work/<name>` from host folder `hostPath`. */
export interface VfolderMount {
  name: string;
  hostPath: string;
}

/**
 * Walk is where a walk ended: the open directories from its top down
 * (`dirs[0]` is the home or the vfolder the path is in, `top` its path in
 * the container, `names` the directories' names below it, `realHome` its host
 * path) and, unless the target is the last of them, the final `name` and its
 * lstat (null when absent). The caller closes `dirs` ({@link closeAll}).
 */
export interface Walk {
  dirs: FileHandle[];
  names: string[];
  realHome: string;
  top: string;
  /** The segments of `top` below the home: `[vfolder name]`, or none. */
  base: string[];
  name?: string;
  st?: Stats | null;
}

/** at is the path of `name` inside the directory open as `dir`, resolved by the kernel from the descriptor, not from a path. */
export const at = (dir: FileHandle, name: string): string => `/proc/self/fd/${dir.fd}/${name}`;
/** shown is a place below `top` (the home unless given) as the container sees it, for messages. */
export const shown = (names: readonly string[], top = CONTAINER_HOME): string => [top, ...names].join('/');
/** errCode is a system error's code (ENOENT, ...), if it has one. */
export const errCode = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code;

/** lstatOrNull is the lstat of `p`, or null when nothing is there. */
export const lstatOrNull = (p: string): Promise<Stats | null> =>
  fs.lstat(p).catch((err: unknown) => {
    if (errCode(err) === 'ENOENT') return null;
    throw err;
  });

/**
 * parsePath splits a user path into segments under the home, lexically;
 * refuses what cannot name a place in it (and the home itself unless
 * `allowHome`).
 */
export function parsePath(input: string, allowHome: boolean): string[] {
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
 * walkHome walks `segs` (from {@link parsePath}) from the home at host path
 * `home` one component at a time, opening each directory with O_NOFOLLOW and
 * resolving symlinks itself (container view). A path whose first component
 * is one of `mounts` is walked in that vfolder's host folder instead. With
 * `followLast` false the last component is only lstat'ed; with `create`,
 * missing directories on the way are made. `input` is the caller's path, for
 * messages.
 */
export async function walkHome(
  home: string,
  input: string,
  allSegs: string[],
  opts: { create?: boolean; followLast: boolean; mounts?: readonly VfolderMount[] },
): Promise<Walk> {
  const mounts = opts.mounts ?? [];
  const mount = allSegs.length > 0 ? mounts.find((m) => m.name === allSegs[0]) : undefined;
  const segs = mount ? allSegs.slice(1) : allSegs;
  const top = mount ? `${CONTAINER_HOME}/${mount.name}` : CONTAINER_HOME;
  const topParts = top.split('/').filter((p) => p !== '');
  const homeFh = await fs.open(mount ? mount.hostPath : home, C.O_RDONLY | C.O_DIRECTORY).catch((err: unknown) => {
    throw new KernelFileNotFoundError(
      mount
        ? `the vfolder ${mount.name} (${mount.hostPath}) cannot be opened: ${errorMessage(err)}`
        : `the kernel's scratch home ${home} cannot be opened: ${errorMessage(err)}`,
    );
  });
  const w: Walk = { dirs: [homeFh], names: [], realHome: '', top, base: mount ? [mount.name] : [] };
  const here = (name: string) => shown([...w.names, name], top);
  // Segments still to walk; `linked` marks those that came from a symlink's target, below which nothing is created.
  const queue = segs.map((seg) => ({ seg, linked: false }));
  let hops = 0;
  let via = '';
  try {
    w.realHome = await fs.readlink(`/proc/self/fd/${homeFh.fd}`);
    while (queue.length > 0) {
      const { seg, linked } = queue.shift()!;
      const dir = w.dirs.at(-1)!;
      const last = queue.length === 0;
      if (seg === '.') continue;
      if (seg === '..') {
        if (w.names.length === 0) throw new InvalidPathError(`path ${JSON.stringify(input)}: ${via}, which leads out of ${top}`);
        await w.dirs.pop()!.close();
        w.names.pop();
        continue;
      }
      // Only a path that names a vfolder first reaches it: through a link, the host has the folder the mount hides.
      if (!mount && w.names.length === 0 && mounts.some((m) => m.name === seg))
        throw new InvalidPathError(
          `path ${JSON.stringify(input)}: ${via}, which leads into the vfolder ${shown([seg])}; name a path in it directly (${shown([seg])}/...)`,
        );
      if (last && !opts.followLast) return { ...w, name: seg, st: await lstatOrNull(at(dir, seg)) };
      const st = await lstatOrNull(at(dir, seg));
      if (st === null && last) return { ...w, name: seg, st };
      if (st === null && (!opts.create || linked)) throw new KernelFileNotFoundError(`${here(seg)} does not exist`);
      if (st === null) {
        w.dirs.push(await makeDir(dir, seg, homeFh));
        w.names.push(seg);
      } else if (st.isSymbolicLink()) {
        const target = await fs.readlink(at(dir, seg));
        via = `${here(seg)} is a symlink to ${target}`;
        if (++hops > MAX_LINK_HOPS) throw new InvalidPathError(`path ${JSON.stringify(input)}: ${via}; too many levels of symlinks`);
        let parts = target.split('/').filter((s) => s !== '');
        if (target.startsWith('/')) {
          if (topParts.some((p, i) => parts[i] !== p)) throw new InvalidPathError(`path ${JSON.stringify(input)}: ${via}, outside ${top}`);
          parts = parts.slice(topParts.length);
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
        throw new InvalidPathError(`path ${JSON.stringify(input)}: ${here(seg)} is not a directory`);
      }
    }
    return w;
  } catch (err) {
    await closeAll(w.dirs);
    throw err;
  }
}

/** Creates directory `name` in `dir` (0755, owned like the home) and opens it; one made concurrently is used as is. */
async function makeDir(dir: FileHandle, name: string, home: FileHandle): Promise<FileHandle> {
  let made = true;
  await fs.mkdir(at(dir, name), 0o755).catch((err: unknown) => {
    if (errCode(err) !== 'EEXIST') throw err;
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

/** closeAll closes the directories a walk opened. */
export async function closeAll(handles: FileHandle[]): Promise<void> {
  await Promise.all(handles.map((h) => h.close().catch(() => undefined))); // read-only directory descriptors: a failed close loses nothing
}
