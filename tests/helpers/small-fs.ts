/**
 * A small file system of the test's own: a sparse file named and labelled
 * after the test, formatted ext4 and loop-mounted (the loop device is freed
 * with the mount). Unmounted, detached and removed after the test, even when
 * it fails. Needs root and loop devices.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { onCleanup, uniqueName } from './env.js';

const run = promisify(execFile);

/** Makes and mounts a `sizeMiB` ext4 file system (with about `inodes` inodes when given); resolves with its mount point. */
export async function smallFs(sizeMiB: number, inodes?: number): Promise<string> {
  const name = uniqueName('ca-fs'); // ca-fs-<hex>: the image, the mount point and (its first 16 characters) the label
  const image = path.join(os.tmpdir(), `${name}.img`);
  const mnt = path.join(os.tmpdir(), `${name}.mnt`);
  onCleanup(async () => {
    await run('umount', [mnt]).catch(() => undefined);
    const { stdout } = await run('losetup', ['-j', image]).catch(() => ({ stdout: '' }));
    for (const dev of stdout
      .split('\n')
      .map((l) => l.split(':')[0])
      .filter(Boolean))
      await run('losetup', ['-d', dev!]).catch(() => undefined);
    await fs.rm(mnt, { recursive: true, force: true });
    await fs.rm(image, { force: true });
  });
  await fs.writeFile(image, '');
  await fs.truncate(image, sizeMiB * 1024 * 1024);
  await run('mkfs.ext4', ['-q', '-m', '0', '-L', name.slice(0, 16), ...(inodes ? ['-N', String(inodes)] : []), image]);
  await fs.mkdir(mnt);
  await run('mount', ['-o', 'loop', image, mnt]);
  return mnt;
}
