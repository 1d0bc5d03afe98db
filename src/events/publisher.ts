/**
 * EventPublisher is the transport of agent -> manager events (docs/wire-contract.rst, "Events"): a PUSH socket connected to the manager's event sink, sending
 * `[event name, agent id, msgpack(args)]`. The sink may be unknown, appear
 * or move at any time; events while none is known are dropped and counted,
 * and a sink that stops reading holds at most `queueLimit` events.
 */
import * as zmq from 'zeromq';
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import type { Codec } from '../wire/codec.js';
import { SendQueue } from '../wire/send-queue.js';
import { copySinkStats, countDropped, emptySinkStats, type DropReason, type EventSink, type SinkStats } from './sink.js';

/** Options of {@link EventPublisher}. */
export interface EventPublisherOptions {
  agentId: string;
  codec: Codec;
  log: Logger;
  /** Events held for a sink that is not reading; more are dropped. */
  queueLimit: number;
  /** The agent's CURVE key pair, used when the sink's key is known; absent, a fresh pair is made for it. */
  keyPair?: { publicKey: string; secretKey: string } | undefined;
}

/** Counters of the publisher. */
export type PublisherStats = SinkStats;

export class EventPublisher implements EventSink {
  private socket: zmq.Push | null = null;
  private queue: SendQueue | null = null;
  private endpoint: string | null = null;
  private serverKey: string | null = null;
  private readonly stats: PublisherStats = emptySinkStats();
  private readonly agentId: Buffer;
  private lastDropLog = 0;

  constructor(private readonly options: EventPublisherOptions) {
    this.agentId = Buffer.from(options.agentId, 'utf8');
  }

  /** The endpoint events go to, or null while no sink is known. */
  get sink(): string | null {
    return this.endpoint;
  }

  snapshot(): PublisherStats {
    return copySinkStats(this.stats);
  }

  /** Whether events go out over CURVE (the sink's public key is known). */
  get encrypted(): boolean {
    return this.serverKey !== null;
  }

  /**
   * Points the publisher at a new sink (or none); events queued for the old
   * one get a short linger. With the sink's CURVE public key (Z85), events
   * are encrypted and the agent authenticates with its key pair.
   */
  setSink(endpoint: string | null, serverKey: string | null = null): void {
    if (endpoint === this.endpoint && serverKey === this.serverKey) return;
    this.closeSocket(1000);
    this.endpoint = endpoint;
    this.serverKey = endpoint ? serverKey : null;
    if (!endpoint) return;
    const socket = new zmq.Push({
      sendHighWaterMark: this.options.queueLimit,
      sendTimeout: 0, // a full queue drops the event at once instead of blocking the agent
      linger: 1000,
    });
    if (serverKey) {
      const pair = this.options.keyPair ?? zmq.curveKeyPair();
      socket.curveServerKey = serverKey;
      socket.curvePublicKey = pair.publicKey;
      socket.curveSecretKey = pair.secretKey;
    }
    socket.connect(endpoint);
    this.socket = socket;
    this.queue = new SendQueue(socket, (err) => this.noteDrop('send_failed', `send failed: ${errorMessage(err)}`), this.options.queueLimit);
    this.options.log.info('sending events to the manager', { sink: endpoint, curve: serverKey !== null });
  }

  /** Sends an event; returns false when it was dropped (no sink, or the queue is full). */
  emit(name: string, args: unknown[]): boolean {
    if (!this.queue) {
      this.noteDrop('no_sink', `no event sink known (${name})`);
      return false;
    }
    const frames = [Buffer.from(name, 'ascii'), this.agentId, this.options.codec.encode(args)];
    if (!this.queue.push(frames)) {
      this.noteDrop('queue_full', `event queue full (${name})`);
      return false;
    }
    this.stats.queued++;
    return true;
  }

  /** Waits (up to `lingerMs`) for queued events to leave, then closes the socket. */
  async close(lingerMs = 1000): Promise<void> {
    const queue = this.queue;
    if (queue) await Promise.race([queue.drained(), new Promise((r) => setTimeout(r, lingerMs).unref())]);
    this.closeSocket(lingerMs);
    this.endpoint = null;
    this.serverKey = null;
  }

  private closeSocket(lingerMs: number): void {
    if (this.socket && !this.socket.closed) {
      this.socket.linger = lingerMs;
      this.socket.close();
    }
    this.socket = null;
    this.queue = null;
  }

  private noteDrop(kind: DropReason, reason: string): void {
    countDropped(this.stats, kind);
    const now = Date.now();
    if (now - this.lastDropLog >= 10_000) {
      this.lastDropLog = now;
      this.options.log.debug('event dropped', { reason, droppedTotal: this.stats.dropped });
    }
  }
}
