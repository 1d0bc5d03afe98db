/**
 * RpcRouter is the transport of the agent's RPC port: it owns the ZeroMQ
 * ROUTER socket, reads frame sets in one loop, hands parsed requests to a
 * handler without waiting for it (so replies may go out in any order), and
 * writes the replies back through one send queue. It knows frames, not
 * methods or kernels.
 */
import * as zmq from 'zeromq';
import type { Logger } from '../log.js';
import { errorMessage, type WireError } from '../errors.js';
import type { Codec } from './codec.js';
import { buildReplyFrames, parseRequestFrames, type MalformedRequest, type ParsedRequest, type ServerStamp } from './frames.js';
import { eagerSender, SendQueue } from './send-queue.js';
import { registerZapDomain } from './zap.js';

/** What a handler answers: a value, or a wire error. */
export type Reply = { ok: true; value: unknown } | { ok: false; error: WireError };

/** Handles one request; must not throw (the dispatcher turns every failure into a wire error). */
export type RequestHandler = (request: ParsedRequest | MalformedRequest) => Promise<Reply>;

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
  curve?: { publicKey: string; secretKey: string; allows(clientKeyZ85: string): boolean } | undefined;
}

/** Counters of the transport, for logs, metrics and tests. */
export interface RouterStats {
  received: number;
  replied: number;
  /** Frame sets that could not be parsed at all (no header). */
  dropped: number;
  /** Replies that could not be delivered (peer gone, send timeout). */
  sendFailures: number;
  inFlight: number;
  /** CURVE clients refused by the ZAP handler (a key not on the allow-list); they get no reply. */
  authRefused: number;
  /** CURVE handshakes admitted. */
  authAdmitted: number;
}

/** How long a reply waits for a peer whose queue is full before it counts as not delivered. */
const SEND_WAIT_MS = 2000;

export class RpcRouter {
  private readonly socket: zmq.Router;
  private readonly queue: SendQueue;
  private readonly stamp: ServerStamp = { pid: process.pid & 0xffff, random: Math.floor(Math.random() * 0x10000) };
  private readonly stats: RouterStats = { received: 0, replied: 0, dropped: 0, sendFailures: 0, inFlight: 0, authRefused: 0, authAdmitted: 0 };
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
      this.socket.zapDomain = `rpc-${process.pid}-${Math.random().toString(36).slice(2)}`;
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
        const parsed = parseRequestFrames(frames, this.options.codec);
        if (parsed.kind === 'drop') {
          this.noteDrop(parsed.reason, frames.length);
          continue;
        }
        void this.handle(parsed);
      }
    } catch (err) {
      // close() makes the pending receive() reject (EAGAIN); only a failure on an open socket is news.
      if (!this.socket.closed) this.options.log.error('RPC receive loop failed', { error: errorMessage(err) });
    }
  }

  private async handle(request: ParsedRequest | MalformedRequest): Promise<void> {
    this.stats.inFlight++;
    try {
      const reply = await this.options.handler(request);
      let payload: Buffer;
      let isError = !reply.ok;
      try {
        payload = this.options.codec.encode(reply.ok ? reply.value : [reply.error.type, reply.error.args, reply.error.repr]);
      } catch (err) {
        isError = true;
        const message = `the result of ${request.method} could not be encoded: ${errorMessage(err)}`;
        payload = this.options.codec.encode(['agent.InternalError', [message], `InternalError(${JSON.stringify(message)})`]);
      }
      const frames = buildReplyFrames(request.envelope, this.stamp, request.header.requestId, isError, payload);
      if (this.queue.push(frames)) this.stats.replied++;
      else this.stats.sendFailures++;
    } finally {
      this.stats.inFlight--;
      if (this.stats.inFlight === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
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
