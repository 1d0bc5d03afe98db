/**
 * SendBuffers: big buffers for messages that are handed to ZeroMQ and then
 * dropped (a reply of `execute` carrying up to 16 MiB of output), used again
 * once ZeroMQ has let go of them instead of allocating a new one per message.
 *
 * zeromq.js sends a buffer without copying it and keeps a reference to it
 * until libzmq has written it out; it does not say when that happens. A
 * buffer here is therefore never handed out itself: the message is a view
 * of it, registered with a FinalizationRegistry, and the buffer comes back
 * to the pool only once that view has been collected, i.e. once neither
 * ZeroMQ nor anyone else can read it any more. The caller must not make
 * other views of the message (`subarray`, `Buffer.from(x.buffer)`) that
 * outlive it. Until a view is collected its buffer is simply not reused: a
 * message whose buffer is still in use gets a new one.
 *
 * Why: every new 16 MiB buffer is fresh memory (page faults while it is
 * written) and external memory that V8 counts toward its next full garbage
 * collection; the collections driven by those buffers were the agent's
 * biggest cost while streaming output (bench/README.md, *Streaming*).
 */

/** Buffers are sized in steps of this, so that replies of similar size share them. */
const STEP = 4 * 1024 * 1024;

export interface SendBufferOptions {
  /** Free buffers kept at most; more are left to the garbage collector. */
  maxFree: number;
  /** Free buffers unused for this long are dropped (ms), so a burst of output leaves no memory behind. */
  idleMs: number;
  /** Starts the idle timer: the global setTimeout unless a test passes a fake clock's. */
  setTimer?: (fn: () => void, ms: number) => { refresh(): unknown; unref(): unknown };
}

export class SendBuffers {
  private free: ArrayBuffer[] = [];
  private idleTimer: { refresh(): unknown; unref(): unknown } | null = null;
  private readonly registry = new FinalizationRegistry<ArrayBuffer>((buffer) => this.giveBack(buffer));
  /** Counters, for tests and profiles. */
  readonly stats = { allocated: 0, reused: 0, returned: 0 };

  constructor(private readonly options: SendBufferOptions = { maxFree: 2, idleMs: 10_000 }) {}

  /** A buffer of at least `bytes` (its whole length is writable), reused when a free one fits. */
  take(bytes: number): Buffer {
    const i = this.free.findIndex((b) => b.byteLength >= bytes && b.byteLength < bytes + 2 * STEP);
    if (i >= 0) {
      this.stats.reused++;
      return Buffer.from(this.free.splice(i, 1)[0]!);
    }
    this.stats.allocated++;
    const size = Math.ceil(bytes / STEP) * STEP;
    return Buffer.from(Buffer.allocUnsafeSlow(size).buffer);
  }

  /** Gives `message`'s buffer back once `message` is collected; a view of another buffer is left alone. */
  track(message: Buffer, from: Buffer): Buffer {
    if (message.buffer === from.buffer) this.registry.register(message, from.buffer as ArrayBuffer);
    return message;
  }

  /** Free buffers held now. */
  get freeCount(): number {
    return this.free.length;
  }

  private giveBack(buffer: ArrayBuffer): void {
    this.stats.returned++;
    if (this.free.length >= this.options.maxFree) return;
    this.free.push(buffer);
    this.idleTimer?.refresh();
    if (this.idleTimer) return;
    this.idleTimer = (this.options.setTimer ?? setTimeout)(() => {
      this.free = [];
      this.idleTimer = null;
    }, this.options.idleMs);
    this.idleTimer.unref();
  }
}
