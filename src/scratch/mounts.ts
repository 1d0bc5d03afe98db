/**
 * The host mechanics under the scratch homes: mount(8), umount(8),
 * losetup(8), fallocate(1) and mkfs.ext4(8) run with execFile (no shell,
 * bounded), the mount table read from /proc/self/mountinfo, the backing file
 * of a loop device and its discard limit in sysfs, a mounted home's figures
 * from statfs, and whether `hostfile` homes can work on this host at all.
 */
import { execFile } from 'node:child_process';
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** How long one mount, umount, losetup, fallocate or mkfs may take. */
const TOOL_TIMEOUT_MS = 30_000;

/** Runs a host tool; its failure is an Error naming the command and what it printed. */
export async function tool(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await exec(cmd, args, { timeout: TOOL_TIMEOUT_MS, env: { ...process.env, LC_ALL: 'C' } });
    return stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string; killed?: boolean };
    const said =
      (e.stderr ?? '').trim().split('\n').pop() || (e.killed ? `no answer within ${TOOL_TIMEOUT_MS / 1000} s` : (e.code ?? e.message));
    throw new Error(`${cmd} ${args.join(' ')} failed: ${said}`, { cause: err });
  }
}

/** One line of the mount table. */
export interface MountEntry {
  target: string;
  fstype: string;
  source: string;
}

/** Undoes mountinfo's octal escapes (`\040` is a space). */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The mounts this process sees (its mount namespace: the host's for an agent run as a service). */
export async function mountTable(): Promise<MountEntry[]> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const target = left.split(' ')[4];
    const [fstype, source] = right.split(' ');
    if (target && fstype && source) out.push({ target: unescape(target), fstype, source: unescape(source) });
  }
  return out;
}

/** The file a loop device (`/dev/loopN`) reads, or null when it is none or has none. */
export async function loopBackingFile(device: string): Promise<string | null> {
  const m = /^\/dev\/(loop\d+)$/.exec(device);
  if (!m) return null;
  const text = await fs.readFile(`/sys/block/${m[1]}/loop/backing_file`, 'utf8').catch(() => null); // optional: a loop device without a backing file is not ours
  return text === null ? null : text.trim().replace(/ \(deleted\)$/, '');
}

/**
 * Turns off discard on a loop device (`/dev/loopN`): a trim of the file
 * system on it (fstrim, often run weekly by a timer) would otherwise punch
 * holes in its backing file, handing the root back blocks its home was
 * promised. False when the device is none or sysfs refuses.
 */
export async function disableDiscard(device: string): Promise<boolean> {
  const m = /^\/dev\/(loop\d+)$/.exec(device);
  if (!m) return false;
  return fs.writeFile(`/sys/block/${m[1]}/queue/discard_max_bytes`, '0').then(
    () => true,
    () => false, // optional: an older kernel or a read-only sysfs; the caller says so
  );
}

/** Detaches every loop device that still reads `file` (a device in use is freed once its last user goes). */
export async function detachLoops(file: string): Promise<void> {
  const listed = await tool('losetup', ['-j', file]).catch(() => '');
  for (const dev of listed
    .split('\n')
    .map((l) => l.split(':')[0]!.trim())
    .filter((d) => /^\/dev\/loop\d+$/.test(d))) {
    await tool('losetup', ['-d', dev]).catch(() => undefined); // gone meanwhile, or autoclear already set
  }
}

/**
 * Unmounts `target`; when a process on the host still holds a file in it,
 * detaches it lazily (gone from the tree now, freed when the last file
 * closes) so that a destroy always finishes.
 */
export async function unmount(target: string): Promise<'unmounted' | 'lazily'> {
  try {
    await tool('umount', [target]);
    return 'unmounted';
  } catch (err) {
    if (!/busy/i.test((err as Error).message)) throw err;
    await tool('umount', ['-l', target]);
    return 'lazily';
  }
}

/** A mounted home's figures from its own file system: bytes in use (metadata included) and its size. */
export async function fsFigures(dir: string): Promise<{ used: number; size: number }> {
  const st = await fs.statfs(dir);
  return { used: (st.blocks - st.bfree) * st.bsize, size: st.blocks * st.bsize };
}

/** Whether `dir` is the root of a file system of its own (another device than its parent's). */
export async function isMountPoint(dir: string): Promise<boolean> {
  const [a, b] = await Promise.all([fs.stat(dir).catch(() => null), fs.stat(`${dir}/..`).catch(() => null)]); // a path that cannot be read is no mount point
  return a !== null && b !== null && a.isDirectory() && a.dev !== b.dev;
}

/** The problem of an agent without the right to mount. */
export const MOUNT_RIGHTS = 'the agent may not mount (run it as root or with CAP_SYS_ADMIN)';

/** CAP_SYS_ADMIN in the effective set: what mount(2) needs. */
export function canMount(): boolean {
  let status = '';
  try {
    status = readFileSync('/proc/self/status', 'utf8');
  } catch {
    // not Linux: decided by the uid below
  }
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? (BigInt(`0x${m[1]}`) & (1n << 21n)) !== 0n : process.getuid?.() === 0;
}

/**
 * What keeps `hostfile` homes from working here (no loop devices, no
 * mkfs.ext4 or fallocate, no right to mount), one phrase each; an empty list when they
 * can, with `found` saying what was found.
 */
export async function hostfileProblems(): Promise<{ problems: string[]; found: string[] }> {
  const problems: string[] = [];
  const found: string[] = [];
  const mkfs = await tool('mkfs.ext4', ['-V']).then(
    () => true,
    (err: Error) => !/ENOENT/.test(err.message), // -V prints to stderr; only a missing binary is a failure
  );
  if (mkfs) found.push('mkfs.ext4');
  else problems.push('mkfs.ext4 is not installed (apt-get install e2fsprogs)');
  if (!existsSync('/dev/loop-control')) problems.push('no /dev/loop-control (modprobe loop, or give the agent the loop devices)');
  else {
    const free = await tool('losetup', ['-f']).catch((err: Error) => {
      problems.push(
        /ENOENT/.test(err.message) ? 'losetup is not installed (apt-get install util-linux)' : `no free loop device (${err.message})`,
      );
      return null;
    });
    if (free) found.push(`loop devices (${free.trim()} free)`);
  }
  const fallocate = await tool('fallocate', ['--version']).then(
    () => true,
    (err: Error) => !/ENOENT/.test(err.message), // only a missing binary is a failure
  );
  if (!fallocate) problems.push('fallocate is not installed (apt-get install util-linux)');
  if (canMount()) found.push('the right to mount');
  else problems.push(MOUNT_RIGHTS);
  return { problems, found };
}
