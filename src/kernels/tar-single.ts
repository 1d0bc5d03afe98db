/**
 * download_single of modern managers: the bytes of one regular file, taken
 * from the tar archive download_file builds (src/kernels/archive.ts), so that
 * the same path checks and size limit apply.
 */
import { KernelFileNotFoundError } from '../errors.js';

const BLOCK = 512;

/** The content of the first entry of `tar` when it is a regular file; a clear error otherwise. */
export function singleFileOfTar(tar: Buffer, filepath: string): Buffer {
  let at = 0;
  const sizeAt = (h: Buffer) => parseInt(h.subarray(124, 136).toString('latin1').replace(/\0.*$/, '').trim() || '0', 8);
  let header = tar.subarray(0, BLOCK);
  let type = String.fromCharCode(header[156] ?? 0);
  // a pax header (long names) comes first: skip it and its data
  while ((type === 'x' || type === 'g') && at + BLOCK <= tar.length) {
    at += BLOCK + Math.ceil(sizeAt(header) / BLOCK) * BLOCK;
    header = tar.subarray(at, at + BLOCK);
    type = String.fromCharCode(header[156] ?? 0);
  }
  if (header.length < BLOCK) throw new KernelFileNotFoundError(`${filepath} does not exist`);
  if (type !== '0' && type !== '\0') {
    throw new KernelFileNotFoundError(
      `${filepath} is ${type === '5' ? 'a directory' : type === '2' ? 'a symbolic link' : 'not a regular file'}: download_single sends one file (download_file sends folders)`,
    );
  }
  return Buffer.from(tar.subarray(at + BLOCK, at + BLOCK + sizeAt(header)));
}
