/**
 * The archive of download_file: an uncompressed tar of one place in a
 * kernel's home, packed from the directory a safe walk opened
 * (src/scratch/safe-walk.ts), straight into the one buffer its reply is sent
 * from. download_single reads a file back out of it (src/kernels/tar-single.ts).
 */
import { constants as BUFFER } from 'node:buffer';
import { constants as C, promises as fs, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import tar, { type Pack } from 'tar-stream';
import { FileTooLargeError } from '../errors.js';
import { releasePending } from '../node/release-memory.js';
import { HEADROOM_BYTES, withHeadroom } from '../wire/headroom.js';
import { DIR_FLAGS, at, errCode, lstatOrNull } from '../scratch/safe-walk.js';

/** Bytes read from a file at a time. */
const READ_CHUNK = 256 * 1024;
/** Room in an archive's buffer beyond max_download_bytes for what the budget does not count (block padding, long-name headers, the end). */
const ARCHIVE_SLACK = 64 * 1024 * 1024;

/**
 * packArchive is the tar archive of entry `name` (stat `st`) of the open
 * directory `dir`, stored as `tarName` with all below it; `name` '.' is `dir`
 * itself. Symlinks are stored as links, never followed; entries other than
 * files, directories and symlinks (fifos, sockets) are left out, and so are
 * entries that vanish meanwhile. Over `maxBytes` (contents plus 512 bytes of
 * header per entry) is a {@link FileTooLargeError} naming `input`.
 *
 * The archive is written straight into one buffer (an {@link ArchiveBuffer}):
 * each file is read in small chunks, so the agent holds the archive once,
 * never a file's chunks beside it nor a second joined copy.
 */
export async function packArchive(
  dir: FileHandle,
  name: string,
  tarName: string,
  st: Stats,
  maxBytes: number,
  input: string,
): Promise<Buffer> {
  const out = new ArchiveBuffer(maxBytes, input);
  const pack = tar.pack();
  const ended = new Promise<void>((resolve, reject) => pack.on('end', resolve).on('error', reject));
  pack.on('data', (c) => {
    if (!out.push(c as Buffer)) pack.destroy(out.overflow());
  });
  const budget = { left: maxBytes, maxBytes, input };
  try {
    await addEntry(pack, dir, name, tarName, st, budget);
    pack.finalize();
    await ended;
    return out.bytes();
  } finally {
    if (!pack.destroyed) pack.destroy();
  }
}

/** What an archive may still take, and what to name when it is over. */
interface Budget {
  left: number;
  readonly maxBytes: number;
  readonly input: string;
}

/** Adds one entry (a directory with all below it) to the archive, charging 512 bytes of header plus its content to the budget. */
async function addEntry(pack: Pack, dir: FileHandle, name: string, tarName: string, st: Stats, budget: Budget): Promise<void> {
  const header = { name: tarName, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtime };
  const charge = (bytes: number) => {
    budget.left -= bytes;
    if (budget.left < 0)
      throw new FileTooLargeError(`download of ${JSON.stringify(budget.input)} is over the limit of ${budget.maxBytes} bytes`);
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
          await addEntry(pack, sub, child, `${tarName}/${child}`, cst, budget).catch((err: unknown) => {
            if (errCode(err) !== 'ENOENT') throw err;
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
async function streamFile(
  fh: FileHandle,
  size: number,
  sink: { write(chunk: Buffer): boolean; once(event: 'drain', fn: () => void): unknown },
): Promise<void> {
  let left = size;
  while (left > 0) {
    const n = Math.min(left, READ_CHUNK);
    const { bytesRead, buffer } = await fh.read(Buffer.allocUnsafe(n), 0, n, null);
    const chunk = bytesRead === 0 ? Buffer.alloc(n) : buffer.subarray(0, bytesRead);
    left -= chunk.length;
    if (!sink.write(chunk)) await new Promise<void>((resolve) => sink.once('drain', () => resolve()));
  }
}
