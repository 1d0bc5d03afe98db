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

export const MANAGER_KEY = 'nodes/manager';
export const EVENT_ADDR_KEY = 'nodes/manager/event_addr';

/** What the link drives: where events go, and what to do when a sink appears. */
export interface ManagerLinkDeps {
  etcd: EtcdStore;
  log: Logger;
  setSink(endpoint: string | null): void;
  /** Called each time the agent attaches to a (new) sink. */
  onAttach(endpoint: string): void;
}

export class ManagerLink {
  private unwatch: Unwatch[] = [];

  constructor(private readonly deps: ManagerLinkDeps) {}

  async start(): Promise<void> {
    const { etcd } = this.deps;
    this.unwatch.push(await etcd.watchKey(MANAGER_KEY, (_k, v) => this.onManager(v)));
    this.unwatch.push(await etcd.watchKey(EVENT_ADDR_KEY, (_k, v) => this.onEventAddr(v)));
    this.onManager(await etcd.get(MANAGER_KEY));
    this.onEventAddr(await etcd.get(EVENT_ADDR_KEY));
  }

  async stop(): Promise<void> {
    const all = this.unwatch;
    this.unwatch = [];
    await Promise.all(all.map((u) => u().catch(() => undefined)));
  }

  private onManager(id: string | null): void {
    if (id) this.deps.log.info('manager registered in etcd', { manager: id });
    else this.deps.log.info('no manager registered in etcd yet; serving RPC and waiting for one', { key: MANAGER_KEY });
  }

  private onEventAddr(value: string | null): void {
    if (value === null || value.trim() === '') {
      this.deps.setSink(null);
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
    this.deps.setSink(endpoint);
    this.deps.onAttach(endpoint);
  }
}
