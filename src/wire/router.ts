/**
 * RpcRouter is the transport of the agent's RPC port: it owns the ZeroMQ
 * ROUTER socket, reads frame sets in one loop, hands parsed requests to a
 * handler without waiting for it (so replies may go out in any order), and
 * writes the replies back through one send queue. It knows frames, not
 * methods or kernels.
 */
import * as zmq from 'zeromq';
import type { Logger } from '../log.js';
import { aiozmqErrorValue, errorMessage, internalWireError, type WireError } from '../errors.js';
import { msgpackCodec, type Codec } from './codec.js';
import { buildReplyFrames, parseRequestFrames, type MalformedRequest, type ParsedRequest, type ServerStamp } from './frames.js';
import { eagerSender, SendQueue } from './send-queue.js';
import { registerZapDomain } from './zap.js';
import {
  buildCallosumReply,
  isCallosumFrames,
  parseCallosumFrames,
  type CallosumFailure,
  type CallosumMalformed,
  type CallosumRequest,
} from './callosum.js';

/**
 * What a handler answers: a value, or a wire error. `undelivered` is called
 * when the value cannot be delivered because the caller is gone (the
 * mandatory ROUTER refuses the send with EHOSTUNREACH), so that what the
 * call made can be given back.
 */
export type Reply = { ok: true; value: unknown; undelivered?: () => void } | { ok: false; error: WireError };

/** Whether a failed send means the peer is gone (rather than slow or a full queue). */
function peerGone(err: unknown): boolean {
  return (err as { code?: string } | null)?.code === 'EHOSTUNREACH';
}

/** What a handler is given: a call that parsed, or one whose header parsed and whose reason says what was wrong. */
export type DispatchRequest =
  | { kind: 'request'; method: string; args: unknown[]; kwargs: Record<string, unknown> }
  | { kind: 'malformed'; method: string; reason: string }
  | ParsedRequest
  | MalformedRequest;

/**
 * Handles one request; must not throw (the dispatcher turns every failure
 * into a wire error). It may answer at once: a reply that is not a promise
 * goes out without a turn of the microtask queue.
 */
export type RequestHandler = (request: DispatchRequest) => Reply | Promise<Reply>;

/**
 * Callosum calls of modern managers on the same socket (docs/modern-managers.rst): their handler (the modern method table's dispatcher), the codec of
 * their arguments, and how a wire error reads as a Callosum failure (the RPC
 * layer's `callosumFailure`). Absent, Callosum frame sets are dropped like
 * any unparseable one.
 */
export interface CallosumOptions {
  handler: RequestHandler;
  codec: Codec;
  failure: (error: WireError) => CallosumFailure;
}

/** Options of {@link RpcRouter}. */
export interface RpcRouterOptions {
  /** ZeroMQ endpoint to bind, e.g. `tcp://*:6001`. */
  endpoint: string;
  codec: Codec;
  handler: RequestHandler;
  log: Logger;
  /** Larger inbound messages make libzmq drop the peer's connection. */
  maxMessageBytes: number;
  /**
   * CURVE on the socket: the agent's key pair (Z85) and which client public
   * keys may connect. Absent, the socket speaks plain ZeroMQ (2018 managers).
   */
  curve?: { publicKey: string; secretKey: string; allows(clientKeyZ85: string): boolean; zapDomain?: string } | undefined;
  /** Serve Callosum (modern) managers beside aiozmq ones. */
  callosum?: CallosumOptions | undefined;
}

/** Counters of the transport, for logs, metrics and tests. */
export interface RouterStats {
  received: number;
  replied: number;
  /** Frame sets that could not be parsed at all (no header), of either generation. */
  dropped: number;
  /** Callosum calls received (1.x and 0.9), handshakes not counted. */
  callosumCalls: number;
  /** Callosum cancels received (the call goes on; nothing is answered). */
  callosumCancels: number;
  /** Replies that could not be delivered (peer gone, send timeout). */
  sendFailures: number;
  inFlight: number;
  /** CURVE clients refused by the ZAP handler (a key not on the allow-list); they get no reply. */
  authRefused: number;
  /** CURVE handshakes admitted. */
  authAdmitted: number;
}

/** The reply to a handler that threw, which it must not: an internal error naming the method. */
function handlerThrew(method: string, err: unknown): Reply {
  return { ok: false, error: internalWireError(`the handler of ${method} failed: ${errorMessage(err)}`) };
}

/** How long a reply waits for a peer whose queue is full before it counts as not delivered. */
const SEND_WAIT_MS = 2000;

export class RpcRouter {
  private readonly socket: zmq.Router;
  private readonly queue: SendQueue;
  private readonly stamp: ServerStamp = { pid: process.pid & 0xffff, random: Math.floor(Math.random() * 0x10000) };
  private readonly stats: RouterStats = {
    received: 0,
    replied: 0,
    dropped: 0,
    callosumCalls: 0,
    callosumCancels: 0,
    sendFailures: 0,
    inFlight: 0,
    authRefused: 0,
    authAdmitted: 0,
  };
  private unregisterZap: (() => Promise<void>) | null = null;
  private lastRefusalLog = 0;
  private loop: Promise<void> | undefined;
  private idleWaiters: Array<() => void> = [];
  private lastDropLog = 0;

  constructor(private readonly options: RpcRouterOptions) {
    this.socket = new zmq.Router({
      mandatory: true, // a reply to a vanished peer fails loudly instead of vanishing
      linger: 2000,
      maxMessageSize: options.maxMessageBytes,
      sendHighWaterMark: 10_000,
      receiveHighWaterMark: 10_000,
      sendTimeout: 0, // replies go out without a readiness check each; see eagerSender
    });
    if (options.curve) {
      this.socket.curveServer = true;
      this.socket.curveSecretKey = options.curve.secretKey;
      this.socket.curvePublicKey = options.curve.publicKey;
      this.socket.zapDomain = options.curve.zapDomain ?? `rpc-${process.pid}-${Math.random().toString(36).slice(2)}`;
    }
    // A peer that stopped reading cannot stall replies to everyone else for more than SEND_WAIT_MS.
    this.queue = new SendQueue(eagerSender(this.socket, SEND_WAIT_MS), (err) => {
      this.stats.sendFailures++;
      options.log.debug('reply not delivered', { error: errorMessage(err) });
    });
  }

  /** Binds the endpoint and starts reading; throws if the address cannot be bound. */
  async start(): Promise<void> {
    const curve = this.options.curve;
    if (curve) {
      // The handler must be bound before the endpoint: without one, libzmq admits every CURVE client.
      this.unregisterZap = await registerZapDomain(this.socket.zapDomain!, {
        allows: (key) => curve.allows(key),
        onAdmitted: () => this.stats.authAdmitted++,
        onRefused: (key, address) => this.noteRefusal(key, address),
        onFailure: (err) =>
          this.options.log.error('the CURVE authentication handler (ZAP) failed', {
            error: errorMessage(err),
            stack: err instanceof Error ? err.stack : undefined,
          }),
      });
    }
    try {
      await this.socket.bind(this.options.endpoint);
    } catch (err) {
      await this.unregisterZap?.();
      this.unregisterZap = null;
      throw err;
    }
    this.loop = this.readLoop();
  }

  /** The endpoint actually bound (useful when the port was chosen by the system). */
  get endpoint(): string | null {
    return this.socket.lastEndpoint;
  }

  /** A snapshot of the counters. */
  snapshot(): RouterStats {
    return { ...this.stats };
  }

  /** Resolves once no request is being handled and every reply has been handed to the socket. */
  async idle(): Promise<void> {
    if (this.stats.inFlight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.queue.drained();
  }

  /** Closes the socket; replies already queued get the linger period to leave. */
  async close(): Promise<void> {
    if (this.socket.closed) return;
    await this.queue.drained();
    this.socket.close();
    await this.loop;
    await this.unregisterZap?.();
    this.unregisterZap = null;
  }

  /** Reads with receive() rather than `for await`, whose iterator adds a promise and a result object per message. */
  private async readLoop(): Promise<void> {
    try {
      while (!this.socket.closed) {
        const frames = await this.socket.receive();
        this.stats.received++;
        try {
          this.receive(frames);
        } catch (err) {
          // A bug of ours for this message: it gets no reply (its caller times out); the loop serves the next one.
          this.options.log.error('RPC: a request could not be handled', {
            frames: frames.length,
            error: errorMessage(err),
            stack: err instanceof Error ? err.stack : undefined,
          });
        }
      }
    } catch (err) {
      // close() makes the pending receive() reject (EAGAIN); only a failure on an open socket is news.
      if (!this.socket.closed)
        this.options.log.error('RPC receive loop failed; the agent answers no RPC any more: restart it', {
          error: errorMessage(err),
          stack: err instanceof Error ? err.stack : undefined,
        });
    }
  }

  private receive(frames: Buffer[]): void {
    // aiozmq requests have 5 frames or more; only shorter sets can be Callosum's, so this costs aiozmq one comparison.
    if (frames.length < 5 && this.options.callosum && isCallosumFrames(frames)) return this.receiveCallosum(frames, this.options.callosum);
    const parsed = parseRequestFrames(frames, this.options.codec);
    if (parsed.kind === 'drop') return this.noteDrop(parsed.reason, frames.length);
    this.handle(parsed);
  }

  private handle(request: ParsedRequest | MalformedRequest): void {
    this.dispatch(this.options.handler, request, (r) => this.reply(request, r));
  }

  /**
   * Calls a handler and hands its reply to `send`: at once when it answered
   * at once, else when its promise settles. A handler that throws or rejects
   * (it must not) answers an internal error rather than bringing the loop down.
   */
  private dispatch<R extends { method: string }>(
    handler: (request: R) => Reply | Promise<Reply>,
    request: R,
    send: (reply: Reply) => void,
  ): void {
    this.stats.inFlight++;
    let reply: Reply | Promise<Reply>;
    try {
      reply = handler(request);
    } catch (err) {
      reply = handlerThrew(request.method, err);
    }
    if (reply instanceof Promise) reply.then(send, (err: unknown) => send(handlerThrew(request.method, err)));
    else send(reply);
  }

  private reply(request: ParsedRequest | MalformedRequest, reply: Reply): void {
    try {
      let payload: Buffer;
      let isError = !reply.ok;
      const errorValue = aiozmqErrorValue; // builtin names, which the 2018 manager handles
      try {
        const value = reply.ok ? reply.value : errorValue(reply.error);
        // The payload goes to the send queue and is dropped once sent: a big one may reuse its buffer.
        payload = this.options.codec.encodeForSend?.(value) ?? this.options.codec.encode(value);
      } catch (err) {
        isError = true;
        payload = this.options.codec.encode(
          errorValue(internalWireError(`the result of ${request.method} could not be encoded: ${errorMessage(err)}`)),
        );
      }
      const frames = buildReplyFrames(request.envelope, this.stamp, request.header.requestId, isError, payload);
      const undelivered = reply.ok ? reply.undelivered : undefined;
      if (this.queue.push(frames, undelivered && ((err) => peerGone(err) && undelivered()))) this.stats.replied++;
      else this.stats.sendFailures++;
    } finally {
      this.callDone();
    }
  }

  private receiveCallosum(frames: Buffer[], callosum: CallosumOptions): void {
    const parsed = parseCallosumFrames(frames, msgpackCodec, callosum.codec);
    switch (parsed.kind) {
      case 'drop':
        this.noteDrop(parsed.reason, frames.length);
        return;
      case 'ping':
        this.queue.push(parsed.reply);
        return;
      case 'cancel':
        this.stats.callosumCancels++; // answering nothing is allowed; the call finishes and its reply is dropped by the client
        return;
      default:
        this.stats.callosumCalls++;
        void this.handleCallosum(parsed, callosum);
    }
  }

  private handleCallosum(request: CallosumRequest | CallosumMalformed, callosum: CallosumOptions): void {
    this.dispatch(callosum.handler, request, (r) => this.replyCallosum(request, r, callosum));
  }

  private replyCallosum(request: CallosumRequest | CallosumMalformed, reply: Reply, callosum: CallosumOptions): void {
    try {
      let frames: Buffer[];
      try {
        frames = buildCallosumReply(
          request,
          msgpackCodec,
          reply.ok ? { ok: true, payload: callosum.codec.encode(reply.value) } : { ok: false, ...callosum.failure(reply.error) },
        );
      } catch (err) {
        const error = internalWireError(`the result of ${request.method} could not be encoded: ${errorMessage(err)}`);
        frames = buildCallosumReply(request, msgpackCodec, { ok: false, ...callosum.failure(error) });
      }
      if (this.queue.push(frames)) this.stats.replied++;
      else this.stats.sendFailures++;
    } finally {
      this.callDone();
    }
  }

  /** Counts a call as finished and wakes idle() waiters when it was the last. */
  private callDone(): void {
    this.stats.inFlight--;
    if (this.stats.inFlight === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Counts a refused CURVE client and logs refusals at most once a second. */
  private noteRefusal(key: string, address: string): void {
    this.stats.authRefused++;
    const now = Date.now();
    if (now - this.lastRefusalLog >= 1000) {
      this.lastRefusalLog = now;
      this.options.log.warn('refused an RPC client whose CURVE key is not allowed; add it to rpc_allowed_keys if it is a manager', {
        key,
        address,
        refusedTotal: this.stats.authRefused,
      });
    }
  }

  /** Logs dropped frame sets at most once a second, so that a flood does not flood the log. */
  private noteDrop(reason: string, frameCount: number): void {
    this.stats.dropped++;
    const now = Date.now();
    if (now - this.lastDropLog >= 1000) {
      this.lastDropLog = now;
      this.options.log.warn('dropped an unparseable RPC message', { reason, frames: frameCount, droppedTotal: this.stats.dropped });
    }
  }
}
