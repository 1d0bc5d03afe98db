/**
 * AgentClient is a typed DEALER client for the agent's RPC port, speaking the
 * same aiozmq.rpc framing as the agent. Calls are matched to replies by
 * request id, so many may be in flight; each has its own timeout.
 */
import * as zmq from 'zeromq';
import { errorMessage, remoteErrorOf, RpcTimeoutError } from '../errors.js';
import { msgpackCodec, type Codec } from '../wire/codec.js';
import { decodeReplyHeader, encodeRequestHeader } from '../wire/headers.js';
import { eagerSender, SendQueue } from '../wire/send-queue.js';
import type { MethodDef } from './methods.js';
import type { Logger } from '../log.js';
import { PendingCalls } from './pending.js';
import type { CallArgs, Param } from './params.js';

/** AgentClientOptions are the options of {@link AgentClient}. */
export interface AgentClientOptions {
  /** Default per-call timeout in milliseconds (10 s). */
  timeoutMs?: number;
  codec?: Codec;
  /** CURVE: the agent's public key and this client's key pair (all Z85), for an agent with RPC authentication on. */
  curve?: { serverKey: string; publicKey: string; secretKey: string };
  /** Where a failure of the read loop is logged (error level); the calls waiting get it either way. */
  log?: Logger;
}

function hasKeys(o: object): boolean {
  for (const _ in o) return true;
  return false;
}

/**
 * AgentClient is the low-level RPC client of one agent: a DEALER socket that
 * speaks the aiozmq.rpc framing, typed by the method table
 * (`client.call(methods.ping, 'hello')`), with replies matched to calls by
 * request id and a timeout per call. {@link AgentApi} wraps it with one method per RPC.
 */
export class AgentClient {
  // sendTimeout 0: a request goes out without a readiness check; see eagerSender.
  private readonly socket = new zmq.Dealer({ linger: 0, sendTimeout: 0 });
  private readonly queue: SendQueue;
  private readonly pending = new PendingCalls();
  private readonly codec: Codec;
  private readonly timeoutMs: number;
  private readonly random = Math.floor(Math.random() * 0x10000);
  /** Method name frames, encoded once per name (a client calls a few names many times). */
  private readonly names = new Map<string, Buffer>();
  private readonly noKwargs: Buffer;
  private nextId = 1;
  private readonly loop: Promise<void>;
  private readonly log: Logger | undefined;
  /** Why the read loop failed; calls fail with it from then on. */
  private failure: string | null = null;

  /** Connects to an agent, e.g. `tcp://127.0.0.1:6001`; ZeroMQ connects in the background. */
  constructor(endpoint: string, options: AgentClientOptions = {}) {
    this.codec = options.codec ?? msgpackCodec;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    if (options.curve) {
      this.socket.curveServerKey = options.curve.serverKey;
      this.socket.curvePublicKey = options.curve.publicKey;
      this.socket.curveSecretKey = options.curve.secretKey;
    }
    this.noKwargs = this.codec.encode({});
    this.log = options.log;
    this.socket.connect(endpoint);
    // Until the agent is connected the socket refuses (EAGAIN); then the request waits, as the call's timeout allows.
    this.queue = new SendQueue(eagerSender(this.socket, -1), (err, frames) => {
      const id = Buffer.isBuffer(frames[0]) ? frames[0].readUInt32LE(4) : -1;
      this.pending.settle(id, undefined, new Error(`could not send the request: ${errorMessage(err)}`));
    });
    this.loop = this.readLoop();
  }

  /** Calls a declared method with typed arguments. */
  call<const P extends readonly Param<unknown>[], R>(def: MethodDef<P, R>, ...args: CallArgs<P>): Promise<R> {
    return this.callRaw(def.name, args, {}) as Promise<R>;
  }

  /** Calls a declared method with a timeout of its own. */
  callWithTimeout<const P extends readonly Param<unknown>[], R>(timeoutMs: number, def: MethodDef<P, R>, ...args: CallArgs<P>): Promise<R> {
    return this.callRaw(def.name, args, {}, timeoutMs) as Promise<R>;
  }

  /** Calls any method name with untyped arguments (for tests of the wire and for tools). */
  callRaw(method: string, args: unknown[], kwargs: Record<string, unknown> = {}, timeoutMs = this.timeoutMs): Promise<unknown> {
    if (this.socket.closed) return Promise.reject(new Error(this.failure ?? 'the client is closed'));
    const requestId = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    const header = encodeRequestHeader({ pid: process.pid, random: this.random, requestId, time: Date.now() / 1000 });
    let name = this.names.get(method);
    if (!name) {
      name = Buffer.from(method, 'utf8');
      if (this.names.size < 256) this.names.set(method, name);
    }
    const frames = [header, name, this.codec.encode(args), hasKeys(kwargs) ? this.codec.encode(kwargs) : this.noKwargs];
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.settle(
          requestId,
          undefined,
          new RpcTimeoutError(`${method} got no reply within ${timeoutMs} ms; is the agent running and reachable?`),
        );
      }, timeoutMs);
      this.pending.add(requestId, { method, resolve, reject, timer });
      if (!this.queue.push(frames)) this.pending.settle(requestId, undefined, new Error('too many requests queued'));
    });
  }

  /** Number of calls waiting for a reply. */
  get inFlight(): number {
    return this.pending.size;
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
        const [headerFrame, payload] = await this.socket.receive(); // not `for await`: its iterator costs a promise more per reply
        const header = headerFrame && decodeReplyHeader(headerFrame);
        if (!header || !payload) continue; // not a reply of this framing
        let value: unknown;
        try {
          value = this.codec.decode(payload);
        } catch (err) {
          this.pending.settle(header.requestId, undefined, new Error(`undecodable reply: ${errorMessage(err)}`));
          continue;
        }
        if (!header.isError) {
          this.pending.settle(header.requestId, value);
          continue;
        }
        const [type, args, repr] = Array.isArray(value) ? value : ['unknown', [value], String(value)];
        this.pending.settle(header.requestId, undefined, remoteErrorOf(String(type), Array.isArray(args) ? args : [args], String(repr)));
      }
    } catch (err) {
      if (!this.socket.closed) this.loopFailed(err);
    }
  }

  /** Resolves when the read loop has ended (after close). */
  closed(): Promise<void> {
    return this.loop;
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
