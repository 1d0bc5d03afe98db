/**
 * LiveSettings loads the agent's settings from etcd (cluster-wide
 * `config/agent/`, per-node `nodes/agents/<id>/config/`, node winning) and
 * keeps them current: on every change it compiles them again, logs what
 * changed, and keeps the last good value of any key whose new value is bad.
 */
import type { Logger } from '../log.js';
import { ConfigError, errorMessage } from '../errors.js';
import type { EtcdStore, Unwatch } from '../adapters/etcd.js';
import { changedSettings, compileSettings } from '../config/settings.js';
import type { Settings } from '../config/setting-table.js';
import { settingPrefixes } from '../config/etcd-keys.js';
import { compilePoolSettings, POOL_DEFAULTS, POOL_KEYS, type PoolSettings } from '../pool/settings.js';

export class LiveSettings {
  private current!: Settings;
  private pool: PoolSettings = POOL_DEFAULTS;
  /** Called with the new pool settings whenever they change. */
  onPoolChange: ((pool: PoolSettings) => void) | null = null;
  private unwatch: Unwatch[] = [];
  private reload: NodeJS.Timeout | null = null;
  private readonly prefixes: { cluster: string; node: string };

  constructor(
    private readonly etcd: EtcdStore,
    agentId: string,
    private readonly log: Logger,
    private readonly onChange: (settings: Settings, before: Settings) => void,
  ) {
    this.prefixes = settingPrefixes(agentId);
  }

  /** The settings in force. */
  get value(): Settings {
    return this.current;
  }

  /** The warm-pool settings in force. */
  get poolValue(): PoolSettings {
    return this.pool;
  }

  /** Loads the settings; a bad value stops the start with a ConfigError naming the key. */
  async load(): Promise<Settings> {
    const compiled = await this.compile();
    if (compiled.problems.length > 0) {
      const first = compiled.problems[0]!;
      throw new ConfigError(`etcd key ${this.etcd.prefix}${first.source}: ${first.message}; fix or delete it`);
    }
    const pool = compilePoolSettings(compiled.cluster, compiled.node, this.prefixes);
    if (pool.problems.length > 0) {
      const first = pool.problems[0]!;
      throw new ConfigError(`etcd key ${this.etcd.prefix}${first.source}: ${first.message}; fix or delete it`);
    }
    this.pool = pool.settings;
    this.current = compiled.settings;
    return this.current;
  }

  /** Watches both prefixes; changes are batched for 100 ms. */
  async watch(): Promise<void> {
    const schedule = () => {
      if (this.reload) clearTimeout(this.reload);
      this.reload = setTimeout(() => void this.apply(), 100);
    };
    // A watch created anew after a compaction re-reads everything: the same full reload as a change.
    this.unwatch.push(await this.etcd.watchPrefix(this.prefixes.cluster, schedule, { onResync: schedule }));
    this.unwatch.push(await this.etcd.watchPrefix(this.prefixes.node, schedule, { onResync: schedule }));
  }

  async stop(): Promise<void> {
    if (this.reload) clearTimeout(this.reload);
    const all = this.unwatch;
    this.unwatch = [];
    await Promise.all(
      all.map((u) =>
        u().catch((err: unknown) => this.log.warn('could not stop watching the settings in etcd', { error: errorMessage(err) })),
      ),
    );
  }

  private async compile() {
    const [cluster, node] = await Promise.all([this.etcd.getPrefix(this.prefixes.cluster), this.etcd.getPrefix(this.prefixes.node)]);
    const compiled = compileSettings(cluster, node, this.prefixes);
    for (const key of compiled.unknown) this.log.warn('ignoring an unknown setting in etcd', { key: this.etcd.prefix + key });
    for (const [prefix, values] of [
      [this.prefixes.cluster, cluster],
      [this.prefixes.node, node],
    ] as const) {
      for (const k of Object.keys(values)) {
        if (k.startsWith('pool/') && !POOL_KEYS.has(k))
          this.log.warn('ignoring an unknown pool setting in etcd', { key: this.etcd.prefix + prefix + k });
      }
    }
    return { ...compiled, cluster, node };
  }

  private async apply(): Promise<void> {
    let compiled;
    try {
      compiled = await this.compile();
    } catch (err) {
      this.log.warn('could not reload settings from etcd; keeping the current ones', { error: errorMessage(err) });
      return;
    }
    this.applyPool(compiled.cluster, compiled.node);
    const before = this.current;
    const next: Settings = { ...compiled.settings };
    for (const p of compiled.problems) {
      // A rejected key keeps its last good value rather than falling back to the default.
      (next as unknown as Record<string, unknown>)[p.field] = before[p.field];
      this.log.error('rejected a setting from etcd; the last good value stays in force', {
        key: this.etcd.prefix + p.source,
        problem: p.message,
      });
    }
    const changes = changedSettings(before, next);
    if (changes.length === 0) return;
    this.current = next;
    for (const c of changes) {
      this.log.info(c.live ? 'setting changed; applied' : 'setting changed; applies at the next agent start', { key: c.key });
    }
    this.onChange(next, before);
  }

  private applyPool(cluster: Record<string, string>, node: Record<string, string>): void {
    const { settings, problems } = compilePoolSettings(cluster, node, this.prefixes, this.pool);
    for (const p of problems) {
      this.log.error('rejected a pool setting from etcd; the last good value stays in force', {
        key: this.etcd.prefix + p.source,
        problem: p.message,
      });
    }
    if (JSON.stringify(settings) === JSON.stringify(this.pool)) return;
    this.pool = settings;
    this.log.info('pool settings changed; applied', { types: settings.types, images: settings.images, autoscale: settings.autoscale });
    this.onPoolChange?.(settings);
  }
}
