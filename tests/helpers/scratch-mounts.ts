/**
 * The mounts and loop devices that scratch homes (scratch_type hostfile and
 * memory) leave under a scratch root, as the host lists them, and their
 * removal after a test even when it fails.
 */
import { execFileSync } from 'node:child_process';
import { onCleanup } from './env.js';

/** The mounts at or under `dir` (target, fstype, source), from findmnt. */
export function mountsUnder(dir: string): string[] {
  const out = execFileSync('findmnt', ['-rn', '-o', 'TARGET,FSTYPE,SOURCE'], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.startsWith(dir + '/'));
}

/** Loop devices reading a file under `dir`. */
export function loopsUnder(dir: string): string[] {
  return execFileSync('losetup', ['-a'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(dir + '/'));
}

/**
 * Unmounts (lazily) what is mounted under `dir` and detaches the loop devices
 * reading files under it after the test; register it after whatever makes
 * `dir`, so that it runs before `dir` is removed or unmounted.
 */
export function cleanMountsUnder(dir: string): void {
  onCleanup(() => {
    for (const l of mountsUnder(dir).reverse()) execFileSync('umount', ['-l', l.split(' ')[0]!]);
    for (const l of loopsUnder(dir)) execFileSync('losetup', ['-d', l.split(':')[0]!]);
  });
}
