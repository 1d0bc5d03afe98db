/**
 * RedisWriter is one connection to a manager's Redis for the kernels' stats
 * (database 0, where both generations of managers read them): it takes a
 * round's commands as one pipeline, or drops the round at once while Redis
 * is gone (nothing is queued: the next round has newer figures), so an
 * outage costs the stats and nothing else. Each outage is logged once when
 * it starts and once when it ends.
 */
import { Redis, type ChainableCommander } from 'ioredis';
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import { backoffDelay, Outage, type BackoffPolicy } from '../util/backoff.js';
import type { RedisTarget } from '../events/redis-stream.js';

/** ioredis' reconnect delays: 200 ms doubling to 5 s. */
const RECONNECT_BACKOFF: BackoffPolicy = { baseMs: 200, maxMs: 5000, jitter: 0 };

/** What a writer has done, for tests, metrics and the bench. */
export interface RedisWriterStats {
  /** Pipelines that Redis took. */
  rounds: number;
  /** Commands in them. */
  commands: number;
  /** Pipelines dropped (no Redis known, not connected, or a failure). */
  dropped: number;
}

export class RedisWriter {
  private client: Redis | null = null;
  private key: string | null = null;
  private readonly outage = new Outage();
  private readonly counts: RedisWriterStats = { rounds: 0, commands: 0, dropped: 0 };

  constructor(
    private readonly log: Logger,
    /** What the log calls the Redis, e.g. `nodes/redis` (2018 managers). */
    private readonly what: string,
  ) {}

  /** The `host:port` written to, or null while none is known. */
  get addr(): string | null {
    return this.key === null ? null : this.key.split('|')[0]!;
  }

  /** Whether a round would be taken now (connected); a round that would not is not worth reading for. */
  get ready(): boolean {
    return this.client?.status === 'ready';
  }

  /** Counts a round dropped without being built (Redis known but not connected). */
  dropRound(): void {
    this.counts.dropped++;
  }

  snapshot(): RedisWriterStats {
    return { ...this.counts };
  }

  /** Points the writer at a Redis (or none); a bad address is logged and leaves it at none. */
  setTarget(target: RedisTarget | null): void {
    const key = target ? `${target.addr}|${target.password ?? ''}` : null;
    if (key === this.key) return;
    this.close();
    if (!target) return;
    const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(target.addr);
    if (!m) {
      this.log.error(`${this.what} is not host:port; no stats are written there`, { addr: target.addr });
      return;
    }
    const client = new Redis({
      host: m[1],
      port: Number(m[2]),
      password: target.password ?? undefined,
      db: 0, // REDIS_STAT_DB of both generations
      enableOfflineQueue: false, // a round that cannot go now is dropped, never held
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
      commandTimeout: 3000,
      retryStrategy: (times) => backoffDelay(times, RECONNECT_BACKOFF),
    });
    client.on('error', (err: unknown) => this.failed(errorMessage(err)));
    client.on('ready', () => {
      const ms = this.outage.recover();
      if (ms !== null)
        this.log.info(`the Redis of ${this.what} takes the kernels' stats again`, { addr: target.addr, outageSec: Math.round(ms / 1000) });
    });
    this.client = client;
    this.key = key;
    this.log.info(`writing the kernels' stats to the Redis of ${this.what}`, { addr: target.addr });
  }

  /**
   * Sends one round: `build` fills a pipeline and returns how many commands
   * it holds. Resolves once Redis answered or the round was dropped; never
   * rejects.
   */
  async write(build: (pipeline: ChainableCommander) => number): Promise<boolean> {
    const client = this.client;
    if (!client || client.status !== 'ready') {
      this.counts.dropped++;
      return false;
    }
    const pipeline = client.pipeline();
    const n = build(pipeline);
    if (n === 0) return true;
    try {
      const results = await pipeline.exec();
      const failure = (results ?? []).find(([err]) => err)?.[0];
      if (failure) throw failure;
      this.counts.rounds++;
      this.counts.commands += n;
      return true;
    } catch (err) {
      this.counts.dropped++;
      this.failed(errorMessage(err));
      return false;
    }
  }

  /** Disconnects; later rounds are dropped until a target is set again. */
  close(): void {
    this.client?.disconnect();
    this.client = null;
    this.key = null;
    this.outage.recover();
  }

  private failed(reason: string): void {
    if (this.outage.fail())
      this.log.warn(
        `the Redis of ${this.what} does not take the kernels' stats; they are dropped until it does (RPC and heartbeats go on)`,
        {
          addr: this.addr,
          reason,
        },
      );
  }
}
