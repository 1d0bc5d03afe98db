/**
 * ManagerLink follows where the manager wants events (etcd
 * `nodes/manager/event_addr`) and points the event publisher there. Unlike
 * the 2018 agent it never blocks start-up on the manager: the sink may be
 * put before or after the agent starts, and may move while it runs.
 */
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import { parseHostPort } from '../config/options.js';
import type { EtcdStore, Unwatch } from '../adapters/etcd.js';
import { Z85_KEY } from '../wire/z85.js';
import { EVENT_ADDR_KEY, MANAGER_KEY, MANAGER_PUBLIC_KEY } from '../config/etcd-keys.js';

/** What the link drives: where events go, and what to do when a sink appears. */
export interface ManagerLinkDeps {
  etcd: EtcdStore;
  log: Logger;
  setSink(endpoint: string | null, serverKey: string | null): void;
  /** Called each time the agent attaches to a (new) sink. */
  onAttach(endpoint: string): void;
}

export class ManagerLink {
  private unwatch: Unwatch[] = [];
  private eventAddr: string | null = null;
  private publicKey: string | null = null;

  constructor(private readonly deps: ManagerLinkDeps) {}

  async start(): Promise<void> {
    const { etcd } = this.deps;
    // After a compaction a watch is created anew and the key read again (onResync).
    const reread = (key: string, apply: (v: string | null) => void) => () => {
      etcd
        .get(key)
        .then(apply, (err: unknown) => this.deps.log.warn('could not re-read a manager key from etcd', { key, error: errorMessage(err) }));
    };
    const onManager = (v: string | null) => this.onManager(v);
    const onEventAddr = (v: string | null) => {
      if (v !== this.eventAddr) this.onEventAddr(v);
    };
    const onPublicKey = (v: string | null) => {
      if (this.checkKey(v) !== this.publicKey) this.onPublicKey(v);
    };
    this.unwatch.push(await etcd.watchKey(MANAGER_KEY, (_k, v) => onManager(v), { onResync: reread(MANAGER_KEY, onManager) }));
    this.unwatch.push(
      await etcd.watchKey(EVENT_ADDR_KEY, (_k, v) => this.onEventAddr(v), { onResync: reread(EVENT_ADDR_KEY, onEventAddr) }),
    );
    this.unwatch.push(
      await etcd.watchKey(MANAGER_PUBLIC_KEY, (_k, v) => this.onPublicKey(v), { onResync: reread(MANAGER_PUBLIC_KEY, onPublicKey) }),
    );
    this.onManager(await etcd.get(MANAGER_KEY));
    this.publicKey = this.checkKey(await etcd.get(MANAGER_PUBLIC_KEY));
    this.onEventAddr(await etcd.get(EVENT_ADDR_KEY));
  }

  async stop(): Promise<void> {
    const all = this.unwatch;
    this.unwatch = [];
    await Promise.all(
      all.map((u) =>
        u().catch((err: unknown) => this.deps.log.warn('could not stop watching a manager key in etcd', { error: errorMessage(err) })),
      ),
    );
  }

  private onManager(id: string | null): void {
    if (id) this.deps.log.info('manager registered in etcd', { manager: id });
    else this.deps.log.info('no manager registered in etcd yet; serving RPC and waiting for one', { key: MANAGER_KEY });
  }

  private checkKey(value: string | null): string | null {
    const v = value?.trim() ?? '';
    if (v === '') return null;
    if (Z85_KEY.test(v)) return v;
    this.deps.log.error('ignoring a bad manager public key in etcd: it must be 40 Z85 characters', { key: MANAGER_PUBLIC_KEY });
    return null;
  }

  private onPublicKey(value: string | null): void {
    this.publicKey = this.checkKey(value);
    this.onEventAddr(this.eventAddr); // reconnect with (or without) CURVE
  }

  private onEventAddr(value: string | null): void {
    this.eventAddr = value;
    if (value === null || value.trim() === '') {
      this.deps.setSink(null, null);
      return;
    }
    let endpoint: string;
    try {
      const { host, port } = parseHostPort(value, EVENT_ADDR_KEY);
      endpoint = `tcp://${host.includes(':') ? `[${host}]` : host}:${port}`;
    } catch (err) {
      this.deps.log.error('ignoring a bad event sink address in etcd', { key: EVENT_ADDR_KEY, error: errorMessage(err) });
      return;
    }
    this.deps.setSink(endpoint, this.publicKey);
    this.deps.onAttach(endpoint);
  }
}
