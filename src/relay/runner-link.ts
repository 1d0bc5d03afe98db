/**
 * RunnerLink is the connection half of a kernel relay (docs/wire-contract.rst,
 * "Kernel runner ports"): a PUSH to the runner's port 2000 and a PULL from 2001, the read loop,
 * and the synchronisation that tells whether the runner tags its records.
 * It knows frames and records, not runs: what a record means is the
 * {@link LinkHandlers}' (KernelRelay's) business.
 *
 * On opening it sends `hello` and `status`: a runner that speaks the
 * integrity extension answers hello (it tags), any runner answers status
 * (a runner that does not know hello ignores it). Until one of them answers
 * (or {@link SYNC_TIMEOUT_MS} passes: a runner that does not tag), inputs are
 * held back and records are kept, then handed on. The first answer to
 * either also says that the runner is up ({@link RunnerLink.whenUp}).
 *
 * The read loop never ends silently: a handler that throws is logged (error,
 * with the stack) and reported to {@link LinkHandlers.failed}, and the loop
 * goes on with the next record, since the socket is fine and the kernel
 * must stay usable. A receive that fails on an open socket is logged and
 * reported the same way, and the PULL is opened again (a new connection to
 * the same port); after {@link MAX_RECONNECTS} such failures in a row the
 * link gives up and says so to `failed` with `final`.
 */
import { randomBytes } from 'node:crypto';
import * as zmq from 'zeromq';
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import { SendQueue } from '../wire/send-queue.js';
import { guardCuts, KERNEL_FRAME_LIMIT, SEND_ONLY_FRAME_LIMIT } from './kernel-socket.js';
import { MAX_PENDING_BYTES } from './output.js';
import { parseHello, parseRecord, parseStatus, type RunnerHello, type RunnerRecord } from './runner-records.js';

/** How long a new relay waits for the runner to say who it is before treating it as one that does not tag. */
export const SYNC_TIMEOUT_MS = 10_000;
/** Receive failures in a row on an open socket after which the link stops reconnecting. */
export const MAX_RECONNECTS = 5;

/** Whether the runner tags its records ('pending' until the link has synchronised). */
export type LinkMode = 'pending' | 'tagged' | 'untagged';
/** The meta frame of an input: the tag, and the run it belongs to. */
export type InputMeta = { t: string; run?: string; keep?: boolean } | null;

/** What the link tells its relay. */
export interface LinkHandlers {
  /** A record came (any record: the runner is alive). */
  answered(): void;
  /** The link knows now whether the runner tags; `hello` is what the runner said (null: untagged, or status only). */
  synced(mode: 'tagged' | 'untagged', hello: RunnerHello | null): void;
  /**
   * A record after the synchronisation, or (`kept`) one that came before it
   * from a runner that tags; a promise returned holds the loop back until it
   * settles (back-pressure).
   */
  record(rec: RunnerRecord, kept: boolean): Promise<void> | undefined;
  /** The loop failed (a handler threw, or a receive on an open socket); `final` when the link gave up reconnecting. */
  failed(err: unknown, final: boolean): void;
  /** The kernel sent a frame over the size limit: the connection was cut and made again; `line` says so (it was logged). */
  cut(line: string): void;
}

/** Options of {@link RunnerLink}. */
export interface RunnerLinkOptions {
  host: string;
  replInPort: number;
  replOutPort: number;
  log(): Logger;
}

export class RunnerLink {
  private readonly push = new zmq.Push({ linger: 0, sendHighWaterMark: 1000, maxMessageSize: SEND_ONLY_FRAME_LIMIT });
  private pull!: zmq.Pull;
  private readonly endpoint: { in: string; out: string };
  private readonly queue: SendQueue;
  /** Tags are `<epoch>.<n>`: unique to this link, so no record meant for another agent's run can match one of ours. */
  private readonly epoch = randomBytes(4).toString('hex');
  private seq = 0;
  private state: LinkMode = 'pending';
  private readonly syncWaiters: Array<() => void> = [];
  private readonly deferred: Array<[string, string, InputMeta]> = [];
  private held: RunnerRecord[] = [];
  private heldBytes = 0;
  /** The reply to the untagged `status` of the synchronisation is still to come (and is not an answer to anyone). */
  private syncStatusOwed = true;
  private readonly syncTimer: NodeJS.Timeout;
  private failuresInARow = 0;
  private closed = false;
  /** The runner has answered `hello` or `status` (see {@link whenUp}). */
  private up = false;
  private readonly upWaiters: Array<() => void> = [];
  /** Records kept before the synchronisation that no one got (the runner does not tag, or there were too many). */
  dropped = 0;

  constructor(
    private readonly options: RunnerLinkOptions,
    private readonly handlers: LinkHandlers,
  ) {
    const host = options.host.includes(':') ? `[${options.host}]` : options.host;
    this.endpoint = { in: `tcp://${host}:${options.replInPort}`, out: `tcp://${host}:${options.replOutPort}` };
    this.push.connect(this.endpoint.in);
    guardCuts({ socket: this.push, endpoint: this.endpoint.in, port: 'port 2000', limit: SEND_ONLY_FRAME_LIMIT }, options.log, (line) =>
      this.handlers.cut(line),
    );
    this.openPull();
    this.queue = new SendQueue(this.push, (err) =>
      this.options.log().warn('could not send to the kernel runner', { error: errorMessage(err) }),
    );
    this.readLoop().catch((err: unknown) =>
      this.options.log().error('the read loop of the kernel runner link ended', { error: errorMessage(err) }),
    ); // readLoop catches what it can; this is the last resort
    // `keep`: a runner that can keeps its runs' output until we acknowledge it (docs/running-code.rst, "Kept output").
    this.queue.push(['hello', '{"keep":true}']);
    this.queue.push(['status', '']);
    this.syncTimer = setTimeout(() => this.synced('untagged', null), SYNC_TIMEOUT_MS);
  }

  /** Whether the runner tags its records ('pending' until the link has synchronised). */
  get mode(): LinkMode {
    return this.state;
  }

  /** Whether the link was closed. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** A new tag for an input or a request. */
  newTag(): string {
    return `${this.epoch}.${++this.seq}`;
  }

  /** Resolves once the link has synchronised (or closed). */
  whenSynced(): Promise<void> {
    if (this.state !== 'pending' || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  /**
   * Resolves once the runner has answered `hello` or `status` (any payload):
   * it is up and reads its inputs (or once the link closed). Docker's proxy
   * accepts connections before the runner listens, so a connection alone
   * says nothing.
   */
  whenUp(): Promise<void> {
    if (this.up || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.upWaiters.push(resolve));
  }

  /** Whether the runner has answered `hello` or `status` on this link. */
  get isUp(): boolean {
    return this.up;
  }

  /** Sends an input record; held until the link has synchronised, tagged when the runner tags. */
  send(type: string, payload: string, meta: InputMeta): void {
    if (this.closed) return;
    if (this.state === 'pending') {
      this.deferred.push([type, payload, meta]);
      return;
    }
    const frames: Array<Buffer | string> = [type, Buffer.from(payload, 'utf8')];
    if (this.state === 'tagged' && meta) frames.push(JSON.stringify(meta));
    this.queue.push(frames);
  }

  /** Closes both sockets; calls waiting for the synchronisation go on. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.syncTimer);
    for (const w of [...this.syncWaiters.splice(0), ...this.upWaiters.splice(0)]) w();
    this.push.close();
    this.pull.close();
  }

  private openPull(): void {
    // A small receive queue: records are up to 64 KiB, so while a run is held back (see RunOutput) libzmq keeps at most ~4 MiB of it here.
    // (A kernel that replaced its runner may send frames up to KERNEL_FRAME_LIMIT; one over it is refused from its header, unread.)
    this.pull = new zmq.Pull({ linger: 0, receiveHighWaterMark: 64, maxMessageSize: KERNEL_FRAME_LIMIT });
    this.pull.connect(this.endpoint.out);
    const pull = this.pull;
    guardCuts({ socket: pull, endpoint: this.endpoint.out, port: 'port 2001', limit: KERNEL_FRAME_LIMIT }, this.options.log, (line) => {
      if (!this.closed && pull === this.pull) this.handlers.cut(line);
    });
  }

  /** The link knows now whether the runner tags: records kept meanwhile are handed on (or dropped), deferred inputs sent. */
  private synced(mode: 'tagged' | 'untagged', hello: RunnerHello | null): void {
    if (this.state !== 'pending') return;
    clearTimeout(this.syncTimer);
    this.state = mode;
    this.handlers.synced(mode, hello);
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    // Before the synchronisation nothing of ours was sent: what came is a previous agent's, for runs taken over or no one.
    if (mode === 'tagged')
      for (const rec of held) void this.handle(() => this.handlers.record(rec, true), rec); // no run of ours holds these back: none was sent yet
    else this.dropped += held.length;
    for (const [type, payload, meta] of this.deferred.splice(0)) this.send(type, payload, meta);
    for (const w of this.syncWaiters.splice(0)) w();
  }

  private async readLoop(): Promise<void> {
    while (!this.closed) {
      const pull = this.pull;
      let frames: Buffer[];
      try {
        frames = await pull.receive();
      } catch (err) {
        if (this.closed || pull.closed) return; // the link was closed: the normal end
        this.failuresInARow++;
        const final = this.failuresInARow > MAX_RECONNECTS;
        this.options
          .log()
          .error(
            final
              ? 'reading from the kernel runner failed again; the relay gives up on this kernel'
              : 'reading from the kernel runner failed; reconnecting',
            {
              error: errorMessage(err),
              stack: err instanceof Error ? err.stack : undefined,
              failuresInARow: this.failuresInARow,
            },
          );
        this.report(err, final);
        if (final) return;
        pull.close();
        this.openPull();
        continue;
      }
      this.failuresInARow = 0;
      const rec = parseRecord(frames);
      const wait = rec ? this.handle(() => this.onRecord(rec), rec) : undefined;
      if (wait) await wait;
    }
  }

  /** Handles one record; what a handler throws is logged and reported, and the loop goes on. */
  private handle(handler: () => Promise<void> | undefined, rec: RunnerRecord): Promise<void> | undefined {
    try {
      return handler()?.catch((err: unknown) => this.handlerFailed(err, rec));
    } catch (err) {
      this.handlerFailed(err, rec);
      return undefined;
    }
  }

  private handlerFailed(err: unknown, rec: RunnerRecord): void {
    this.options.log().error('the relay failed handling a record of the kernel runner; its runs and requests end now', {
      record: rec.type,
      error: errorMessage(err),
      stack: err instanceof Error ? err.stack : undefined,
    });
    this.report(err, false);
  }

  private report(err: unknown, final: boolean): void {
    try {
      this.handlers.failed(err, final);
    } catch (again) {
      this.options.log().error('the relay failed ending its runs after a failure', {
        error: errorMessage(again),
        stack: again instanceof Error ? again.stack : undefined,
      });
    }
  }

  private onRecord(rec: RunnerRecord): Promise<void> | undefined {
    this.handlers.answered();
    if (!this.up && (rec.type === 'status' || rec.type === 'hello')) {
      this.up = true;
      for (const w of this.upWaiters.splice(0)) w();
    }
    if (this.state !== 'pending') {
      if (rec.type === 'status' && rec.meta?.t === undefined && this.syncStatusOwed) {
        this.syncStatusOwed = false; // the answer to the synchronisation's status, after hello settled it
        return undefined;
      }
      return this.handlers.record(rec, false);
    }
    if (rec.type === 'hello') {
      const hello = parseHello(rec.payload);
      if (hello) return void this.synced('tagged', hello);
    } else if (rec.type === 'status' && this.syncStatusOwed) {
      this.syncStatusOwed = false;
      const gen = parseStatus(rec.payload)?.generation;
      // Our runner answers hello before status; one whose status has no generation does not tag.
      if (typeof gen === 'string')
        this.synced('tagged', { generation: gen, pid: null, keep: false, previousStatus: null, current: null, queue: [], recent: [] });
      else this.synced('untagged', null);
      return undefined;
    }
    this.hold(rec);
    return undefined;
  }

  private hold(rec: RunnerRecord): void {
    if (this.heldBytes + rec.payload.length > MAX_PENDING_BYTES) {
      this.dropped++;
      return;
    }
    this.held.push(rec);
    this.heldBytes += rec.payload.length;
  }
}
