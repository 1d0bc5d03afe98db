/**
 * The room a new kernel's home needs on the scratch root, checked against
 * the root's own figures (statfs) before anything of the kernel is made:
 * bytes and inodes alike. `scratch_reserve` keeps back its MiB of the bytes
 * and the same share of the inodes, so that the kernels already there and
 * the agent's own files keep room to write.
 */
import { promises as fs } from 'node:fs';
import { NoResourcesError } from '../errors.js';

const MiB = 1024 * 1024;

/**
 * The inodes a new home takes on the scratch root at its making: its folder,
 * `.config` and `environ.txt`, a bootstrap script, a few template files (a
 * hostfile home takes two: its folder and its backing file).
 */
export const HOME_INODES = 16;

/** What a new home takes from the scratch root when it is made. */
export interface HomeNeeds {
  /** Bytes allocated on the root at once (a hostfile home's size; 0 for a folder or a tmpfs). */
  bytes: number;
  inodes: number;
  /** The home in words, for the refusal ("a 48 MiB hostfile home"). */
  what: string;
}

/** The inodes scratch_reserve keeps back: the share of the root's inodes that its MiB are of the root's bytes. */
function reservedInodes(st: { blocks: number; bsize: number; files: number }, reserveMiB: number): number {
  const bytes = st.blocks * st.bsize;
  return bytes > 0 ? Math.ceil(((reserveMiB * MiB) / bytes) * st.files) : 0;
}

/**
 * Refuses a new kernel (a retryable NoResourcesError naming the figures)
 * when the scratch root cannot give its home `need` and keep
 * `scratch_reserve` free, in bytes or in inodes. A file system that cannot be
 * read is left to the create's own steps; one without a fixed number of
 * inodes (statfs reports none, as btrfs does) has only its bytes checked.
 */
export async function checkScratchRoom(root: string, reserveMiB: number, need: HomeNeeds): Promise<void> {
  const st = await fs.statfs(root).catch(() => null); // optional: without it, no disk figure
  if (!st) return;
  const free = st.bavail * st.bsize;
  const freeMiB = Math.floor(free / MiB);
  if (free - need.bytes < reserveMiB * MiB) {
    throw new NoResourcesError(
      need.bytes > 0
        ? `the scratch root ${root} has ${freeMiB} MiB free, less than ${need.what} (allocated in full when made) and scratch_reserve (${reserveMiB} MiB) take: no new kernels of that size until kernels are destroyed or free space`
        : `the scratch root ${root} has ${freeMiB} MiB free, less than scratch_reserve (${reserveMiB} MiB): no new kernels until kernels free space or are destroyed`,
    );
  }
  if (st.files <= 0) return;
  const reserve = reservedInodes(st, reserveMiB);
  if (st.ffree - need.inodes < reserve) {
    throw new NoResourcesError(
      `the scratch root ${root} has ${st.ffree} free inodes, fewer than ${need.what} takes (${need.inodes}) and scratch_reserve keeps back (${reserve}, the share of the root's ${st.files} inodes that its ${reserveMiB} MiB are of its bytes): no new kernels until kernels remove files or are destroyed`,
    );
  }
}
