/**
 * RedisStreamSink is the transport of events to modern managers (docs/modern-managers.rst): `XADD events * name <event> source <agent id> args
 * <msgpack(args)>` in Redis database 4. Like the PUSH publisher it never
 * blocks the caller: events wait in a bounded queue while Redis is slow or
 * gone, events beyond the bound (or while no Redis is known) are dropped
 * and counted, and each outage is logged once when it starts and once when
 * it ends, with what it cost.
 */
import { Redis } from 'ioredis';
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import { backoffDelay, type BackoffPolicy } from '../util/backoff.js';
import type { Codec } from '../wire/codec.js';
import { copySinkStats, countDropped, emptySinkStats, type EventSink, type SinkStats } from './sink.js';
import { REDIS_ADDR_KEY } from '../config/etcd-keys.js';

/** ioredis' reconnect delays: 200 ms doubling to 2 s. */
const REDIS_BACKOFF: BackoffPolicy = { baseMs: 200, maxMs: 2000, jitter: 0 };

/** Options of {@link RedisStreamSink}. */
export interface RedisStreamSinkOptions {
  agentId: string;
  codec: Codec;
  log: Logger;
  /** Events held while Redis does not take them; more are dropped. */
  queueLimit: number;
  /** The stream key (24.09: `events`). */
  stream?: string;
  /** The database (24.09: 4, `REDIS_STREAM_DB`). */
  db?: number;
}

/** Where Redis is: `host:port` and an optional password, as `config/redis` in etcd gives them. */
export interface RedisTarget {
  addr: string;
  password?: string | null | undefined;
}

/** How many events one round trip carries at most. */
const BATCH = 256;

export class RedisStreamSink implements EventSink {
  private client: Redis | null = null;
  private target: string | null = null;
  private readonly queue: Array<[string, Buffer]> = [];
  private readonly stats: SinkStats = emptySinkStats();
  private writing = false;
  private outage: { since: number; droppedAtStart: number } | null = null;
  private readonly stream: string;

  constructor(private readonly options: RedisStreamSinkOptions) {
    this.stream = options.stream ?? 'events';
  }

  /** The `host:port` events go to, or null while none is known. */
  get addr(): string | null {
    return this.target;
  }

  /** Whether the connection to Redis is up; null while no Redis is set (`config/redis`). */
  get connected(): boolean | null {
    return this.client ? this.client.status === 'ready' : null;
  }

  snapshot(): SinkStats {
    return copySinkStats(this.stats);
  }

  /** Points the sink at a Redis (or none); events still queued for the old one go to the new one. */
  setTarget(target: RedisTarget | null): void {
    const key = target ? `${target.addr}|${target.password ?? ''}` : null;
    if (key === (this.target && `${this.target}|${this.password ?? ''}`)) return;
    this.disconnect();
    if (!target) return;
    const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(target.addr);
    if (!m) {
      this.options.log.error(`${REDIS_ADDR_KEY} is not host:port; events to modern managers are off`, { addr: target.addr });
      return;
    }
    this.target = target.addr;
    this.password = target.password ?? null;
    const client = new Redis({
      host: m[1],
      port: Number(m[2]),
      password: target.password ?? undefined,
      db: this.options.db ?? 4,
      enableOfflineQueue: false, // while Redis is gone the queue here holds events, bounded; ioredis' own would not be
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
      commandTimeout: 5000,
      retryStrategy: (times) => backoffDelay(times, REDIS_BACKOFF),
      lazyConnect: false,
    });
    client.on('error', (err: unknown) => this.noteOutage(errorMessage(err)));
    client.on('ready', () => {
      this.endOutage();
      this.flush();
    });
    this.client = client;
    this.options.log.info('sending events to the Redis stream of modern managers', { addr: target.addr, stream: this.stream });
  }

  private password: string | null = null;

  /** Queues an event; returns false when it was dropped (no Redis known, or the queue is full). */
  emit(name: string, args: unknown[]): boolean {
    if (!this.client) {
      countDropped(this.stats, 'no_sink');
      return false;
    }
    if (this.queue.length >= this.options.queueLimit) {
      countDropped(this.stats, 'queue_full');
      this.noteOutage(`event queue full (${this.options.queueLimit} events)`);
      return false;
    }
    this.queue.push([name, this.options.codec.encode(args)]);
    this.flush();
    return true;
  }

  /** Waits (up to `lingerMs`) for queued events to leave, then disconnects. */
  async close(lingerMs = 1000): Promise<void> {
    const deadline = Date.now() + lingerMs;
    while (this.queue.length > 0 && this.client?.status === 'ready' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    countDropped(this.stats, 'send_failed', this.queue.length); // Redis had not taken them within the linger
    this.queue.length = 0;
    this.disconnect();
  }

  private disconnect(): void {
    this.client?.disconnect();
    this.client = null;
    this.target = null;
    this.password = null;
    this.outage = null;
  }

  /** Sends queued events in batches while Redis takes them; one writer at a time, never awaited by emit. */
  private flush(): void {
    if (this.writing) return;
    const client = this.client;
    if (!client || client.status !== 'ready' || this.queue.length === 0) return;
    this.writing = true;
    const batch = this.queue.splice(0, BATCH);
    const pipeline = client.pipeline();
    const source = this.options.agentId;
    for (const [name, args] of batch) pipeline.xadd(this.stream, '*', 'name', name, 'source', source, 'args', args);
    pipeline
      .exec()
      .then((results) => {
        const failed = (results ?? []).filter(([err]) => err).length;
        this.stats.queued += batch.length - failed;
        countDropped(this.stats, 'send_failed', failed);
        if (failed > 0) this.noteOutage(`XADD failed: ${errorMessage(results!.find(([e]) => e)![0])}`);
      })
      .catch((err: unknown) => {
        countDropped(this.stats, 'send_failed', batch.length);
        this.noteOutage(errorMessage(err));
      })
      .finally(() => {
        this.writing = false;
        if (client === this.client) this.flush();
      });
  }

  private noteOutage(reason: string): void {
    if (this.outage || !this.client) return;
    this.outage = { since: Date.now(), droppedAtStart: this.stats.dropped };
    this.options.log.warn('the Redis event stream does not take events; they wait (bounded) and are then dropped until it does', {
      addr: this.target,
      reason,
      queueLimit: this.options.queueLimit,
    });
  }

  private endOutage(): void {
    if (!this.outage) return;
    this.options.log.info('the Redis event stream takes events again', {
      addr: this.target,
      outageSec: Math.round((Date.now() - this.outage.since) / 1000),
      droppedMeanwhile: this.stats.dropped - this.outage.droppedAtStart,
    });
    this.outage = null;
  }
}
