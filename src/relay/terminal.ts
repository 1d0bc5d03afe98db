/**
 * TerminalRelay carries a kernel's terminal for clients that cannot reach the
 * kernel's ports: a PUB to its port 2002 (input bytes) and a SUB on 2003
 * (output bytes), opened on first use. Output is kept in a bounded scrollback
 * addressed by a byte cursor, so a client reads "everything since cursor N"
 * with a long poll and learns how much it missed if it fell behind.
 */
import * as zmq from 'zeromq';
import { SendQueue } from '../wire/send-queue.js';
import type { Logger } from '../log.js';
import { errorMessage, InternalError } from '../errors.js';
import { guardCuts, KERNEL_FRAME_LIMIT, SEND_ONLY_FRAME_LIMIT } from './kernel-socket.js';

/** What a read returns: the bytes after the cursor, the cursor to read from next, and bytes lost to the scrollback bound. */
export interface TerminalChunk {
  data: Buffer;
  cursor: number;
  dropped: number;
}

export class TerminalRelay {
  private readonly pub = new zmq.Publisher({ linger: 0, maxMessageSize: SEND_ONLY_FRAME_LIMIT });
  private readonly sub = new zmq.Subscriber({ linger: 0, maxMessageSize: KERNEL_FRAME_LIMIT });
  private readonly queue: SendQueue;
  private readonly ready: Promise<void>;
  /** Scrollback: `chunks` hold the bytes from offset `start` to `end`. */
  private chunks: Buffer[] = [];
  private start = 0;
  private end = 0;
  private waiters: Array<() => void> = [];
  /** Why the read loop failed (null while it runs): reads fail with it, and the kernel's next use opens a new relay. */
  failure: string | null = null;
  private closed = false;

  constructor(
    host: string,
    stdinPort: number,
    stdoutPort: number,
    private readonly log: Logger,
    private readonly scrollbackBytes = 1024 * 1024,
  ) {
    const h = host.includes(':') ? `[${host}]` : host;
    // PUB drops what it sends before the connection is up: writes wait for it (3 s at most).
    this.ready = new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 3000);
      this.pub.events.on('connect', () => {
        clearTimeout(t);
        setTimeout(resolve, 50); // let the runner's SUB finish its handshake
      });
    });
    this.pub.connect(`tcp://${h}:${stdinPort}`);
    this.sub.connect(`tcp://${h}:${stdoutPort}`);
    // Frames over the limits are refused unread and the connection made again (the cut is logged).
    guardCuts({ socket: this.pub, endpoint: `tcp://${h}:${stdinPort}`, port: 'port 2002', limit: SEND_ONLY_FRAME_LIMIT }, () => log);
    guardCuts({ socket: this.sub, endpoint: `tcp://${h}:${stdoutPort}`, port: 'port 2003', limit: KERNEL_FRAME_LIMIT }, () => log);
    this.sub.subscribe();
    this.queue = new SendQueue(this.pub, (err) => log.warn('terminal input not delivered', { error: errorMessage(err) }));
    void this.readLoop(); // it catches and logs whatever ends it
  }

  /** Sends input bytes to the terminal. */
  async write(data: Buffer): Promise<void> {
    await this.ready;
    this.queue.push([data]);
  }

  /** Output after `cursor`; waits up to `timeoutMs` when there is none yet. */
  async read(cursor: number, timeoutMs: number): Promise<TerminalChunk> {
    if (this.failure) throw new InternalError(this.failure);
    if (cursor >= this.end && timeoutMs > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, timeoutMs);
        function done() {
          clearTimeout(t);
          resolve();
        }
        this.waiters.push(done);
      });
      if (this.failure) throw new InternalError(this.failure);
    }
    const from = Math.max(Math.min(cursor, this.end), this.start);
    const all = Buffer.concat(this.chunks);
    return { data: all.subarray(from - this.start), cursor: this.end, dropped: Math.max(0, this.start - cursor) };
  }

  /** Closes both sockets; reads waiting answer with what there is. */
  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w();
    this.pub.close();
    this.sub.close();
  }

  private async readLoop(): Promise<void> {
    try {
      for await (const [data] of this.sub) {
        if (!data || data.length === 0) continue;
        this.chunks.push(data);
        this.end += data.length;
        while (this.end - this.start > this.scrollbackBytes && this.chunks.length > 1) this.start += this.chunks.shift()!.length;
        for (const w of this.waiters.splice(0)) w();
      }
    } catch (err) {
      if (this.closed || this.sub.closed) return this.log.debug('terminal relay closed');
      // Not a close: readers waiting fail now with the reason instead of timing out on a relay that reads nothing.
      this.failure = `the agent's terminal relay failed (${errorMessage(err)}; the agent logged it at error level); read again to reconnect`;
      this.log.error("the terminal relay stopped reading the kernel's output", {
        error: errorMessage(err),
        stack: err instanceof Error ? err.stack : undefined,
      });
      for (const w of this.waiters.splice(0)) w();
    }
  }
}
