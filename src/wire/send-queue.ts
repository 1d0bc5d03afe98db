/**
 * SendQueue serialises sends on one ZeroMQ socket: zeromq.js allows one send
 * in flight per socket, and replies or events are produced concurrently.
 */
type Frames = Array<Buffer | string>;

/** The one thing the queue needs of a socket. */
export interface Sender {
  send(frames: Frames): Promise<void>;
}

/** SendQueue is the one writer of a socket; failures go to a callback, never to the caller. */
export class SendQueue {
  private readonly pending: Frames[] = [];
  private running = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly socket: Sender,
    private readonly onError: (err: unknown, frames: Frames) => void,
    /** Messages waiting beyond this are refused (the caller counts them as dropped). */
    private readonly limit = 100_000,
  ) {}

  /** Number of messages waiting to be written. */
  get size(): number {
    return this.pending.length;
  }

  /** Queues a message; returns false (and queues nothing) when the queue is full. */
  push(frames: Frames): boolean {
    if (this.pending.length >= this.limit) return false;
    this.pending.push(frames);
    if (!this.running) void this.pump();
    return true;
  }

  /** Resolves once everything queued so far has been handed to the socket. */
  drained(): Promise<void> {
    if (!this.running && this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async pump(): Promise<void> {
    this.running = true;
    try {
      for (let frames = this.pending.shift(); frames; frames = this.pending.shift()) {
        try {
          await this.socket.send(frames);
        } catch (err) {
          this.onError(err, frames);
        }
      }
    } finally {
      this.running = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
