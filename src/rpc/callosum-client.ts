/**
 * CallosumClient is a DEALER client that speaks to the agent the way a
 * modern (24.09) manager does: Callosum 1.x framing (the `PING`/`PONG`
 * handshake first, then `UPPER` calls), `okey` the str `""` as Backend.AI
 * sends it, a `seq` per call, a timeout per call that sends a cancel
 * (type 5). It serves the test manager (tests/helpers/) and `agentctl
 * --callosum`; failures are {@link RemoteError}s whose type is the
 * exception name the agent sent.
 */
import * as zmq from 'zeromq';
import { errorMessage, RemoteError, RpcTimeoutError } from '../errors.js';
import { msgpackCodec } from '../wire/codec.js';
import { buildCallosumRequest, CALLOSUM_PING, CallosumType, parseCallosumReply, type CallosumGeneration } from '../wire/callosum.js';
import type { MethodDef } from './methods.js';
import type { Logger } from '../log.js';
import { PendingCalls } from './pending.js';
import type { CallArgs, Param } from './params.js';

/** Options of {@link CallosumClient}. */
export interface CallosumClientOptions {
  /** Per-call timeout in ms (10 s). */
  timeoutMs?: number;
  /** How long the handshake may take before the client gives up (5 s, as Callosum 1.x). */
  handshakeMs?: number;
  /** The framing: `1.x` (default) or `0.9` (no handshake). */
  generation?: CallosumGeneration;
  /** The order key sent with each call: `""` (str) as Backend.AI's manager, or bytes as plain Callosum. */
  okey?: string | Buffer;
  /** CURVE: the agent's public key and this client's key pair (Z85). */
  curve?: { serverKey: string; publicKey: string; secretKey: string };
  /** Where a failure of the read loop is logged (error level); the calls waiting get it either way. */
  log?: Logger;
}

export class CallosumClient {
  private readonly socket = new zmq.Dealer({ linger: 0 });
  private readonly pending = new PendingCalls();
  private readonly generation: CallosumGeneration;
  private readonly okey: string | Buffer;
  private readonly timeoutMs: number;
  private seq = 1;
  private pong: (() => void) | null = null;
  private ready: Promise<void>;
  private readonly loop: Promise<void>;
  private readonly log: Logger | undefined;
  /** Why the read loop failed; calls fail with it from then on. */
  private failure: string | null = null;

  /** Connects to `tcp://host:port` and, for 1.x, starts the handshake (the first call waits for it). */
  constructor(endpoint: string, options: CallosumClientOptions = {}) {
    this.generation = options.generation ?? '1.x';
    this.okey = options.okey ?? '';
    this.timeoutMs = options.timeoutMs ?? 10_000;
    if (options.curve) {
      this.socket.curveServerKey = options.curve.serverKey;
      this.socket.curvePublicKey = options.curve.publicKey;
      this.socket.curveSecretKey = options.curve.secretKey;
    }
    this.log = options.log;
    this.socket.connect(endpoint);
    this.loop = this.readLoop();
    this.ready = this.generation === '1.x' ? this.handshake(options.handshakeMs ?? 5000) : Promise.resolve();
    this.ready.catch(() => undefined); // reported to each call
  }

  private async handshake(timeoutMs: number): Promise<void> {
    const got = new Promise<void>((resolve) => (this.pong = resolve));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new RpcTimeoutError(
              `the agent did not answer the Callosum handshake (PING) within ${timeoutMs} ms; is it running and reachable?`,
            ),
          ),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.socket.send([...CALLOSUM_PING]).then(() => got), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Calls a declared method of the modern table with typed arguments. */
  call<const P extends readonly Param<unknown>[], R>(def: MethodDef<P, R>, ...args: CallArgs<P>): Promise<R> {
    return this.callRaw(def.name, args) as Promise<R>;
  }

  /** Calls a declared method with a timeout of its own. */
  callWithTimeout<const P extends readonly Param<unknown>[], R>(timeoutMs: number, def: MethodDef<P, R>, ...args: CallArgs<P>): Promise<R> {
    return this.callRaw(def.name, args, {}, timeoutMs) as Promise<R>;
  }

  /** Calls any method by name; on timeout a cancel goes out and the call fails with RpcTimeoutError. */
  async callRaw(
    method: string,
    args: unknown[],
    kwargs: Record<string, unknown> = {},
    timeoutMs = this.timeoutMs,
    packed?: Buffer,
  ): Promise<unknown> {
    if (this.socket.closed) throw new Error(this.failure ?? 'the client is closed');
    await this.ready;
    const seq = this.seq++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.settle(seq, undefined, new RpcTimeoutError(`${method} got no reply within ${timeoutMs} ms; the call was cancelled`));
        const cancel = buildCallosumRequest(this.generation, msgpackCodec, {
          method,
          okey: this.okey,
          seq,
          args: [],
          type: CallosumType.CANCEL,
        });
        // The call has failed with its timeout already; a cancel that cannot go out only leaves the agent finishing it.
        this.socket
          .send(cancel)
          .catch((err: unknown) =>
            this.log?.warn('could not send the cancel of a timed-out call', { method, seq, error: errorMessage(err) }),
          );
      }, timeoutMs);
      this.pending.add(seq, { method, resolve, reject, timer });
      const frames = buildCallosumRequest(this.generation, msgpackCodec, { method, okey: this.okey, seq, args, kwargs, packed });
      this.socket
        .send(frames)
        .catch((err: unknown) => this.pending.settle(seq, undefined, new Error(`could not send ${method}: ${errorMessage(err)}`)));
    });
  }

  /** Resolves when the read loop has ended (after close). */
  closed(): Promise<void> {
    return this.loop;
  }

  /** Calls a method with arguments packed elsewhere (msgpack of `{args, kwargs}`), e.g. carrying ext values. */
  callPacked(method: string, packed: Buffer, timeoutMs = this.timeoutMs): Promise<unknown> {
    return this.callRaw(method, [], {}, timeoutMs, packed);
  }

  /** Fails every pending call and closes the socket. */
  close(): void {
    if (this.socket.closed) return;
    this.pending.failAll(() => new Error('the client was closed'));
    this.socket.close();
  }

  private async readLoop(): Promise<void> {
    try {
      while (!this.socket.closed) {
        const frames = await this.socket.receive();
        if (frames.length === 3 && frames[0]!.toString() === 'PONG') {
          this.pong?.();
          this.pong = null;
          continue;
        }
        const reply = parseCallosumReply(frames, msgpackCodec);
        if (!reply || typeof reply.header.seq !== 'number') continue;
        // a reply must echo okey in the type it was sent in, as the real client checks
        const okeyMatches =
          typeof this.okey === 'string'
            ? reply.header.okey === this.okey
            : Buffer.isBuffer(reply.header.okey) && reply.header.okey.equals(this.okey);
        if (!okeyMatches) continue;
        if (reply.result.ok) this.pending.settle(reply.header.seq, reply.result.value);
        else this.pending.settle(reply.header.seq, undefined, new RemoteError(reply.result.name, [reply.result.repr], reply.result.repr));
      }
    } catch (err) {
      if (!this.socket.closed) this.loopFailed(err); // else: the client was closed, the normal end
    }
  }

  /**
   * The read loop failed on an open socket (a reply it could not handle):
   * the error is logged, every call waiting fails with it at once rather
   * than at its timeout, and the client closes, since no reply can reach
   * its caller any more.
   */
  private loopFailed(err: unknown): void {
    this.failure = `the client's read loop failed (${errorMessage(err)}); the client is closed: make a new one`;
    this.log?.error('the RPC client stopped reading replies', {
      error: errorMessage(err),
      stack: err instanceof Error ? err.stack : undefined,
    });
    const failure = this.failure;
    this.pending.failAll(() => new Error(failure));
    this.socket.close();
  }
}
