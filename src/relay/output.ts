/**
 * RunOutput collects what a kernel runner printed for one run between two
 * replies of `execute`, and shapes it as docs/running-code.rst says: for
 * api_version 2 and 3 a `console` list with adjacent stdout (stderr) records
 * merged, for api_version 1 separate `stdout`, `stderr`, `media` and `html`.
 * Text stays in the UTF-8 bytes it came in ({@link Utf8Text}): only checked,
 * never decoded. A character split across two records comes out whole, bytes
 * that are not UTF-8 come out as U+FFFD, and a record over the size limit is
 * cut with a marker.
 */
import { isUtf8 } from 'node:buffer';
import { Utf8Text } from '../wire/utf8-text.js';

/** Records larger than this are truncated (docs/wire-contract.rst, "Kernel runner ports"). */
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
export type ConsoleEntry = ['stdout' | 'stderr', Utf8Text] | ['media', [string, unknown]] | ['html', string];

/** The output part of a run result, in the shape of one api_version (api 1 is the 2018 one: strings). */
export type OutputFields =
  { console: ConsoleEntry[] } | { stdout: string; stderr: string; media: Array<[string, unknown]>; html: string[] };

/**
 * Where a trailing character that is not complete yet begins (the length of
 * `bytes` when the last one is complete), for bytes cut at any point.
 */
export function completeUpTo(bytes: Uint8Array): number {
  const n = bytes.length;
  for (let i = n - 1; i >= 0 && i >= n - 4; i--) {
    const b = bytes[i]!;
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: look further back for its lead
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return n - i < need ? i : n;
  }
  return n; // no lead byte near the end: not UTF-8 anyway, and the check will say so
}

/** Cuts a record to the limit, saying so in a marker the reader can see. */
export function truncateRecord(payload: Buffer, limit = MAX_RECORD_BYTES): { bytes: Buffer; truncated: boolean } {
  if (payload.length <= limit) return { bytes: payload, truncated: false };
  return { bytes: payload.subarray(0, limit), truncated: true };
}

export class RunOutput {
  private entries: ConsoleEntry[] = [];
  private pendingBytes = 0;
  private roomWaiters: Array<() => void> = [];
  // Per stream, the first bytes of a character the last record cut (at most 3).
  private readonly held = { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };

  /** Adds a `stdout` or `stderr` record; bytes may end in the middle of a character. */
  addText(stream: 'stdout' | 'stderr', payload: Buffer): void {
    this.pendingBytes += payload.length;
    const { bytes: cut, truncated } = truncateRecord(payload);
    const held = this.held[stream];
    const bytes = held.length > 0 ? Buffer.concat([held, cut]) : cut;
    const end = truncated ? bytes.length : completeUpTo(bytes);
    this.held[stream] = Buffer.from(bytes.subarray(end)); // a copy: keeps no big record alive
    const text = new Utf8Text();
    appendChecked(text, bytes.subarray(0, end));
    if (truncated)
      text.appendString(`\n[output truncated: a record of ${payload.length} bytes exceeded the ${MAX_RECORD_BYTES}-byte limit]\n`);
    this.push(stream, text);
  }

  /** Adds a `media` record (JSON `{type, data}`); a malformed one becomes a note on stderr. */
  addMedia(payload: Buffer): void {
    this.pendingBytes += payload.length;
    try {
      const m = JSON.parse(payload.toString('utf8')) as { type?: unknown; data?: unknown };
      if (typeof m.type !== 'string') throw new Error('no type');
      this.entries.push(['media', [m.type, m.data]]);
    } catch {
      this.push('stderr', new Utf8Text().appendString('[a media record from the kernel could not be read]\n'));
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
    const stdout = new Utf8Text();
    const stderr = new Utf8Text();
    const out = { media: [] as Array<[string, unknown]>, html: [] as string[] };
    for (const e of entries) {
      if (e[0] === 'media') out.media.push(e[1]);
      else if (e[0] === 'html') out.html.push(e[1]);
      else (e[0] === 'stdout' ? stdout : stderr).appendText(e[1]);
    }
    return { stdout: stdout.toString(), stderr: stderr.toString(), ...out };
  }

  /** Flushes the bytes of a character that never completed, as U+FFFD (at the end of a run). */
  finish(): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      const rest = this.held[stream];
      this.held[stream] = Buffer.alloc(0);
      if (rest.length > 0) this.push(stream, new Utf8Text().appendString(rest.toString('utf8')));
    }
  }

  private push(stream: 'stdout' | 'stderr', text: Utf8Text): void {
    if (text.byteLength === 0) return;
    const last = this.entries[this.entries.length - 1];
    if (last && last[0] === stream) last[1].appendText(text);
    else this.entries.push([stream, text]);
  }
}

/** Appends bytes as they are if they are UTF-8, else decoded with U+FFFD for what is not. */
function appendChecked(text: Utf8Text, bytes: Buffer): void {
  if (isUtf8(bytes)) text.appendUtf8(bytes);
  else text.appendString(bytes.toString('utf8'));
}
