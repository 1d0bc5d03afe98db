/**
 * writeFileAtomic writes the agent's own files (claim records, the metrics
 * file; a kernel's environ.txt, in a folder the kernel can write, goes the
 * same way through descriptors: src/scratch/home-ops.ts) so that a full or failing disk never leaves
 * half a file: the data goes to a temporary file beside the target, is
 * fsynced, and renamed over it; on any failure the temporary file is removed
 * and the old file (if any) stays as it was. The caller decides what a
 * failure means (log and retry, or fail the step that needed it).
 *
 * The temporary file and the rename are what keep a half-written file from
 * ever being read; the fsync only matters if the machine itself goes down.
 * A file that means nothing once its container is gone (a claim record: no
 * container outlives a crash of its machine) is
 * written with `sync: false`, which spares a claim its slowest step.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';

export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o644, o: { sync?: boolean } = {}): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  let fh: fs.FileHandle | null = null;
  try {
    fh = await fs.open(tmp, 'wx', mode);
    await fh.writeFile(data);
    if (o.sync !== false) await fh.sync();
    await fh.close();
    fh = null;
    await fs.rename(tmp, file);
  } catch (err) {
    // The write's own error is thrown below; the temp file may be half made or not made at all, so these steps fail quietly.
    await fh?.close().catch(() => undefined);
    await fs.unlink(tmp).catch(() => undefined);
    throw err;
  }
}
