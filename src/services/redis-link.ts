/**
 * RedisLink follows `config/redis` in etcd (24.09's keys: `addr` as
 * `host:port`, optional `password`) and points the Redis event sink at it;
 * set, cleared or changed at any time, it takes effect at once. Without the
 * key, no events go to Redis (2018 managers need none).
 */
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import type { EtcdStore, Unwatch } from '../adapters/etcd.js';
import type { RedisTarget } from '../events/redis-stream.js';
import { LEGACY_REDIS_KEY, REDIS_ADDR_KEY, REDIS_PASSWORD_KEY, REDIS_PREFIX } from '../config/etcd-keys.js';

/** What RedisLink needs. */
export interface RedisLinkDeps {
  etcd: EtcdStore;
  log: Logger;
  setTarget(target: RedisTarget | null): void;
}

export class RedisLink {
  private unwatch: Unwatch | null = null;
  private reading: Promise<void> = Promise.resolve();

  constructor(private readonly deps: RedisLinkDeps) {}

  /** Reads the key once and then follows it. */
  async start(): Promise<void> {
    await this.read();
    this.unwatch = await this.deps.etcd.watchPrefix(REDIS_PREFIX, () => {
      this.reading = this.reading.then(() => this.read());
    });
  }

  async stop(): Promise<void> {
    await this.unwatch?.().catch((err: unknown) =>
      this.deps.log.warn('could not stop watching config/redis/ in etcd', { error: errorMessage(err) }),
    );
    this.unwatch = null;
    await this.reading;
  }

  private async read(): Promise<void> {
    try {
      const [addr, password] = await Promise.all([this.deps.etcd.get(REDIS_ADDR_KEY), this.deps.etcd.get(REDIS_PASSWORD_KEY)]);
      this.deps.setTarget(addr ? { addr, password } : null);
    } catch (err) {
      this.deps.log.warn('could not read config/redis from etcd; the Redis event sink stays as it was', { error: errorMessage(err) });
    }
  }
}

/**
 * LegacyRedisLink follows `nodes/redis` in etcd (`host:port` of the 2018
 * manager's Redis, which the 2018 agent read at start) and points the 2018
 * stats writer at it; set, cleared or changed at any time, it takes effect
 * at once. Without the key, no 2018 stats are written.
 */
export class LegacyRedisLink {
  private unwatch: Unwatch | null = null;
  private reading: Promise<void> = Promise.resolve();

  constructor(private readonly deps: RedisLinkDeps) {}

  /** Reads the key once and then follows it. */
  async start(): Promise<void> {
    await this.read();
    this.unwatch = await this.deps.etcd.watchPrefix(LEGACY_REDIS_KEY, () => {
      this.reading = this.reading.then(() => this.read());
    });
  }

  async stop(): Promise<void> {
    await this.unwatch?.().catch((err: unknown) =>
      this.deps.log.warn(`could not stop watching ${LEGACY_REDIS_KEY} in etcd`, { error: errorMessage(err) }),
    );
    this.unwatch = null;
    await this.reading;
  }

  private async read(): Promise<void> {
    try {
      const addr = await this.deps.etcd.get(LEGACY_REDIS_KEY);
      this.deps.setTarget(addr ? { addr: addr.trim() } : null);
    } catch (err) {
      this.deps.log.warn(`could not read ${LEGACY_REDIS_KEY} from etcd; the 2018 stats writer stays as it was`, {
        error: errorMessage(err),
      });
    }
  }
}
