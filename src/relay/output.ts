/**
 * RunOutput collects what a kernel runner printed for one run between two
 * replies of `execute`, and shapes it as PROTOCOL.md section 1 says: for
 * api_version 2 and 3 a `console` list with adjacent stdout (stderr) records
 * merged, for api_version 1 separate `stdout`, `stderr`, `media` and `html`.
 * Output bytes are decoded incrementally, so a character split across two
 * records comes out whole; a record over the size limit is cut with a marker.
 */
import { StringDecoder } from 'node:string_decoder';

/** Records larger than this are truncated (PROTOCOL.md section 4). */
export const MAX_RECORD_BYTES = 10 * 1024 * 1024;

/**
 * Output held for one run between two replies. Past it the relay stops
 * reading from the runner until a reply takes the output, so a kernel that
 * prints without end to a client that stopped calling `continue` cannot grow
 * the agent's memory (the backlog stays in ZeroMQ's high-water marks and the
 * kernel's own memory, which its limit bounds); nothing read is lost.
 */
export const MAX_PENDING_BYTES = 16 * 1024 * 1024;

/** The console entry types of api_version 2 and 3. */
export type ConsoleEntry = ['stdout' | 'stderr', string] | ['media', [string, unknown]] | ['html', string];

/** The output part of a run result, in the shape of one api_version. */
export type OutputFields =
  | { console: ConsoleEntry[] }
  | { stdout: string; stderr: string; media: Array<[string, unknown]>; html: string[] };

/** Cuts a record to the limit, saying so in a marker the reader can see. */
export function truncateRecord(payload: Buffer, limit = MAX_RECORD_BYTES): { bytes: Buffer; truncated: boolean } {
  if (payload.length <= limit) return { bytes: payload, truncated: false };
  return { bytes: payload.subarray(0, limit), truncated: true };
}

export class RunOutput {
  private entries: ConsoleEntry[] = [];
  private pendingBytes = 0;
  private roomWaiters: Array<() => void> = [];
  // StringDecoder rather than a streaming TextDecoder: it keeps a split character for the next record just the same,
  // and decodes through Buffer#toString, several times faster on the 64 KiB records of a big output.
  private readonly decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };

  /** Adds a `stdout` or `stderr` record; bytes may end in the middle of a character. */
  addText(stream: 'stdout' | 'stderr', payload: Buffer): void {
    this.pendingBytes += payload.length;
    const { bytes, truncated } = truncateRecord(payload);
    let text = this.decoders[stream].write(bytes);
    if (truncated) {
      text += this.decoders[stream].end(); // flush what the cut left dangling
      text += `\n[output truncated: a record of ${payload.length} bytes exceeded the ${MAX_RECORD_BYTES}-byte limit]\n`;
    }
    if (text) this.push([stream, text]);
  }

  /** Adds a `media` record (JSON `{type, data}`); a malformed one becomes a note on stderr. */
  addMedia(payload: Buffer): void {
    this.pendingBytes += payload.length;
    try {
      const m = JSON.parse(payload.toString('utf8')) as { type?: unknown; data?: unknown };
      if (typeof m.type !== 'string') throw new Error('no type');
      this.entries.push(['media', [m.type, m.data]]);
    } catch {
      this.push(['stderr', '[a media record from the kernel could not be read]\n']);
    }
  }

  /** Adds an `html` record. */
  addHtml(payload: Buffer): void {
    this.pendingBytes += payload.length;
    this.entries.push(['html', truncateRecord(payload).bytes.toString('utf8')]);
  }

  /** Whether the run holds MAX_PENDING_BYTES or more, waiting for a reply to take them. */
  get full(): boolean {
    return this.pendingBytes >= MAX_PENDING_BYTES;
  }

  /** Resolves once the output is no longer full (a reply took it) or {@link release} is called. */
  waitForRoom(): Promise<void> {
    if (!this.full) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Wakes every waiter, e.g. when the run is retired or the relay closes. */
  release(): void {
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
  }

  /** Whether anything is waiting to be returned. */
  get empty(): boolean {
    return this.entries.length === 0;
  }

  /** Returns what was collected since the last take, shaped for the api version, and starts afresh. */
  take(apiVersion: number): OutputFields {
    const entries = this.entries;
    this.entries = [];
    this.pendingBytes = 0;
    this.release();
    if (apiVersion >= 2) return { console: entries };
    const out = { stdout: '', stderr: '', media: [] as Array<[string, unknown]>, html: [] as string[] };
    for (const e of entries) {
      if (e[0] === 'stdout') out.stdout += e[1];
      else if (e[0] === 'stderr') out.stderr += e[1];
      else if (e[0] === 'media') out.media.push(e[1]);
      else out.html.push(e[1]);
    }
    return out;
  }

  /** Flushes characters held back by the decoders (at the end of a run). */
  finish(): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      const rest = this.decoders[stream].end();
      if (rest) this.push([stream, rest]);
    }
  }

  private push(entry: ['stdout' | 'stderr', string]): void {
    const last = this.entries[this.entries.length - 1];
    if (last && last[0] === entry[0]) last[1] = (last[1] as string) + entry[1];
    else this.entries.push(entry);
  }
}
