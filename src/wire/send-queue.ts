/**
 * SendQueue serialises sends on one ZeroMQ socket: zeromq.js allows one send
 * in flight per socket, and replies or events are produced concurrently.
 */
type Frames = Array<Buffer | string>;

/** The one thing the queue needs of a socket. */
export interface Sender {
  send(frames: Frames): Promise<void>;
}

/** A socket that {@link eagerSender} can drive: one whose send timeout it may change. */
export interface TimedSocket extends Sender {
  sendTimeout: number;
}

/**
 * Wraps a socket created with `sendTimeout: 0` so that a send costs no
 * readiness check: with a zero timeout zeromq.js queues the message at once
 * (or refuses it at once with EAGAIN) instead of first asking libzmq whether
 * the socket is writable, a system call per message. Only when the socket
 * refuses does this wait for it, as a socket with `sendTimeout: waitMs`
 * would (-1: without limit), then it returns to the zero timeout. Other
 * errors (e.g. EHOSTUNREACH from a mandatory ROUTER) reject as they are.
 */
export function eagerSender(socket: TimedSocket, waitMs: number): Sender {
  const slow = async (frames: Frames): Promise<void> => {
    socket.sendTimeout = waitMs;
    try {
      await socket.send(frames);
    } finally {
      if (!(socket as { closed?: boolean }).closed) socket.sendTimeout = 0;
    }
  };
  return {
    send: (frames) =>
      socket.send(frames).catch((err: unknown) => {
        if ((err as { code?: string })?.code !== 'EAGAIN') throw err;
        return slow(frames);
      }),
  };
}

/** SendQueue is the one writer of a socket; failures go to a callback, never to the caller. */
export class SendQueue {
  private readonly pending: Array<[Frames, ((err: unknown) => void) | undefined]> = [];
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

  /** Queues a message; returns false (and queues nothing) when the queue is full. `failed` is told too when its send fails. */
  push(frames: Frames, failed?: (err: unknown) => void): boolean {
    if (this.pending.length >= this.limit) return false;
    this.pending.push([frames, failed]);
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
      for (let next = this.pending.shift(); next; next = this.pending.shift()) {
        const [frames, failed] = next;
        try {
          await this.socket.send(frames);
        } catch (err) {
          this.onError(err, frames);
          failed?.(err);
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
