/**
 * The reading of a container's log (Docker's `GET /containers/{id}/logs`)
 * as a stream, keeping only its last bytes: memory stays bounded whatever
 * the log holds, and the caller learns how much was left out. Failures are
 * dockerode's; DockerEngine (docker.ts) turns them into our errors.
 */
import type Docker from 'dockerode';

/** The end of a container's output, as {@link readLogTail} gives it. */
export interface LogTail {
  /** Stdout and stderr interleaved, starting at a line (or at least a character) boundary when cut. */
  text: string;
  /** Bytes of the lines read that were left out before `text`. */
  cutBytes: number;
  /** Whether Docker sent as many lines as asked for (so earlier lines may exist that were not read). */
  linesFull: boolean;
}

const NEWLINE = 0x0a;

/**
 * Reads at most the last `tailLines` lines of a container's output and
 * keeps their last `maxBytes` bytes. Kernel containers have no TTY, so the
 * stream is multiplexed (8-byte frame headers, split again here even where
 * a frame spans chunks); a TTY container's raw stream is taken as it is.
 */
export async function readLogTail(docker: Docker, id: string, tailLines: number, maxBytes: number): Promise<LogTail> {
  const stream = await new Promise<NodeJS.ReadableStream>((resolve, reject) => {
    docker.modem.dial(
      {
        path: `/containers/${id}/logs?`,
        method: 'GET',
        isStream: true,
        statusCodes: { 200: true, 404: 'no such container', 500: 'server error' },
        options: { stdout: true, stderr: true, follow: false, tail: tailLines },
      },
      (err: unknown, data: unknown) => (err ? reject(err as Error) : resolve(data as NodeJS.ReadableStream)),
    );
  });
  const kept: Buffer[] = [];
  let keptBytes = 0;
  let total = 0;
  let lines = 0;
  const keep = (b: Buffer) => {
    if (b.length === 0) return;
    total += b.length;
    for (let i = b.indexOf(NEWLINE); i !== -1; i = b.indexOf(NEWLINE, i + 1)) lines++;
    kept.push(b);
    keptBytes += b.length;
    while (kept.length > 1 && keptBytes - kept[0]!.length >= maxBytes) keptBytes -= kept.shift()!.length;
  };
  let pending: Buffer = Buffer.alloc(0);
  let raw: boolean | null = null; // null until the first 8 bytes say whether the stream is multiplexed
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    if (raw === null && pending.length >= 8) raw = !isFrameHeader(pending);
    if (raw === null) continue;
    if (raw) {
      keep(pending);
      pending = Buffer.alloc(0);
      continue;
    }
    let i = 0;
    while (i + 8 <= pending.length) {
      const size = pending.readUInt32BE(i + 4);
      if (i + 8 + size > pending.length) break;
      keep(pending.subarray(i + 8, i + 8 + size));
      i += 8 + size;
    }
    pending = pending.subarray(i);
  }
  if (raw !== false) keep(pending); // a stream shorter than one header is raw text
  let out: Buffer = Buffer.concat(kept);
  if (out.length > maxBytes) out = out.subarray(out.length - maxBytes);
  if (out.length < total) out = fromLineStart(out);
  return { text: out.toString('utf8'), cutBytes: total - out.length, linesFull: lines >= tailLines };
}

function isFrameHeader(b: Buffer): boolean {
  return b[0]! <= 2 && b[1] === 0 && b[2] === 0 && b[3] === 0;
}

/** A cut buffer from its first whole line, or from its first whole character when it holds no line break. */
function fromLineStart(b: Buffer): Buffer {
  const nl = b.indexOf(NEWLINE);
  if (nl !== -1 && nl + 1 < b.length) return b.subarray(nl + 1);
  let i = 0;
  while (i < b.length && i < 4 && (b[i]! & 0xc0) === 0x80) i++; // UTF-8 continuation bytes of a character cut in two
  return b.subarray(i);
}
