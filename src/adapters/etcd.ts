/**
 * EtcdStore is the agent's adapter to etcd v3: every key is relative to
 * `/sorna/<namespace>/` (PROTOCOL.md section 3), values are UTF-8 strings.
 * It waits for etcd with a bounded backoff, and its watches reconnect by
 * themselves (the etcd3 watch manager resumes from the last revision).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3, type Namespace, type Watcher } from 'etcd3';
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';

/** A change seen by a watch: the key (relative to the watched prefix's namespace) and its new value, or null when deleted. */
export type WatchCallback = (key: string, value: string | null) => void;

/** Closes a watch. */
export type Unwatch = () => Promise<void>;

export class EtcdStore {
  private readonly client: Etcd3;
  private readonly ns: Namespace;
  readonly prefix: string;

  constructor(
    readonly address: { host: string; port: number },
    namespace: string,
    private readonly log: Logger,
  ) {
    const host = address.host.includes(':') ? `[${address.host}]` : address.host;
    this.client = new Etcd3({
      hosts: `http://${host}:${address.port}`,
      dialTimeout: 3000,
      // unary calls get a deadline, so a hung etcd cannot hang a caller forever
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5000 }),
    });
    this.prefix = `/sorna/${namespace}/`;
    this.ns = this.client.namespace(this.prefix);
  }

  /** Human-readable address, for logs. */
  get where(): string {
    return `${this.address.host}:${this.address.port}`;
  }

  /**
   * Waits until etcd answers, retrying with a backoff from 250 ms up to 5 s.
   * Logs once when it starts waiting and then every 30 s, not on every try.
   */
  async waitReady(signal: AbortSignal): Promise<void> {
    let delay = 250;
    let lastLog = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.ns.get('nodes/manager').string();
        if (attempt > 1) this.log.info('etcd is reachable', { etcd: this.where, attempts: attempt });
        return;
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        if (Date.now() - lastLog >= 30_000) {
          lastLog = Date.now();
          this.log.warn('waiting for etcd', {
            etcd: this.where,
            error: errorMessage(err),
            hint: 'start etcd or fix --etcd-addr / BACKEND_ETCD_ADDR; the agent keeps retrying',
          });
        }
      }
      await sleep(delay, undefined, { signal });
      delay = Math.min(delay * 2, 5000);
    }
  }

  /** The version of the etcd server that answers, e.g. `3.4.23`; one try, bounded by the call deadline. */
  async serverVersion(): Promise<string> {
    return (await this.client.maintenance.status()).version;
  }

  /** The value of a key, or null when absent. */
  async get(key: string): Promise<string | null> {
    return this.ns.get(key).string();
  }

  /** Every key below a prefix, with the prefix stripped from the keys. */
  async getPrefix(prefix: string): Promise<Record<string, string>> {
    const all = await this.ns.getAll().prefix(prefix).strings();
    return Object.fromEntries(Object.entries(all).map(([k, v]) => [k.slice(prefix.length), v]));
  }

  async put(key: string, value: string): Promise<void> {
    await this.ns.put(key).value(value);
  }

  /** Deletes one key. */
  async delete(key: string): Promise<void> {
    await this.ns.delete().key(key);
  }

  /** Deletes a key only if it still holds `value` (one etcd transaction); returns whether it did. */
  async deleteIf(key: string, value: string): Promise<boolean> {
    const r = await this.ns.if(key, 'Value', '==', value).then(this.ns.delete().key(key)).commit();
    return r.succeeded;
  }

  /** Watches one key; the callback gets every put and delete. */
  async watchKey(key: string, onChange: WatchCallback): Promise<Unwatch> {
    return this.attach(await this.ns.watch().key(key).create(), onChange);
  }

  /** Watches every key below a prefix. */
  async watchPrefix(prefix: string, onChange: WatchCallback): Promise<Unwatch> {
    return this.attach(await this.ns.watch().prefix(prefix).create(), onChange);
  }

  private attach(watcher: Watcher, onChange: WatchCallback): Unwatch {
    watcher.on('put', (kv) => onChange(kv.key.toString('utf8'), kv.value.toString('utf8')));
    watcher.on('delete', (kv) => onChange(kv.key.toString('utf8'), null));
    watcher.on('disconnected', (err) => this.log.debug('etcd watch disconnected; reconnecting', { error: errorMessage(err) }));
    watcher.on('error', (err) => this.log.error('etcd watch failed', { error: errorMessage(err) }));
    return () => watcher.cancel();
  }

  /** Closes the connection; pending calls fail. */
  close(): void {
    this.client.close();
  }
}
