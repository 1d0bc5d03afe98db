/**
 * NodeDrain empties a node for maintenance (docs/agentctl.rst, "Draining a
 * node"): while it drains, new kernels are refused with agent.NodeDraining
 * (retryable: the manager places them elsewhere), the warm pool creates
 * nothing and removes its idle containers, and the kernels that run keep
 * running (restarting one still works: it is not a new kernel). After the
 * deadline, if one was given, the kernels left are destroyed with reason
 * `node-drain` (each with its kernel_terminated).
 *
 * A drain asked by RPC (`drain`, `undrain`) or by a manager or operator
 * without reaching the node is the node's key `nodes/agents/<id>/drain` in
 * etcd, watched like the live settings: it is not leased, so a drain
 * outlives an agent restart (the clock too: the key holds unix times) until
 * the key is deleted. SIGTERM with sigterm_action drain drains for the stop
 * only ({@link drainForStop}), without writing the key. How the drain shows
 * (registration, heartbeats) is the caller's `announce`.
 */
import type { Logger } from '../log.js';
import { errorMessage, NodeDrainingError } from '../errors.js';
import type { EtcdStore, Unwatch } from '../adapters/etcd.js';
import { drainKey } from '../config/etcd-keys.js';
import type { DrainStatus } from '../rpc/results.js';
import type { KernelService } from '../kernels/service.js';
import type { WarmPool } from '../pool/pool.js';

/** A drain in force: unix seconds it began and after which the kernels left are destroyed (null: never). */
export interface DrainState {
  since: number;
  deadline: number | null;
}

/** The kernel reason of the kernels a drain's deadline destroys. */
export const NODE_DRAIN_REASON = 'node-drain';

/** How often a drain for a stop looks whether the kernels have ended. */
const STOP_POLL_MS = 500;

/** What {@link NodeDrain} works on. */
export interface NodeDrainDeps {
  etcd: EtcdStore;
  agentId: string;
  log: Logger;
  kernels: KernelService;
  pool: WarmPool;
  /** Says the drain (or its end, null) where others see it: the registration and the heartbeat. */
  announce(state: DrainState | null): Promise<void>;
}

/**
 * Reads the value of a drain key: JSON `{since, deadline}`, or a bare number
 * of seconds from `now`; anything else (an empty value, `true`) is a drain
 * without deadline from now, and `bad` says why when the value was not one
 * of the forms.
 */
export function parseDrainValue(value: string, now: number): { state: DrainState; bad: string | null } {
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return { state: { since: now, deadline: now + Number(text) }, bad: null };
  if (text === '' || text === 'true') return { state: { since: now, deadline: null }, bad: null };
  try {
    const v = JSON.parse(text) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const { since, deadline } = v as Record<string, unknown>;
      const s = typeof since === 'number' && Number.isFinite(since) ? since : now;
      if (deadline === null || deadline === undefined) return { state: { since: s, deadline: null }, bad: null };
      if (typeof deadline === 'number' && Number.isFinite(deadline)) return { state: { since: s, deadline }, bad: null };
    }
  } catch {
    // not JSON: said below
  }
  return {
    state: { since: now, deadline: null },
    bad: 'expected {"since": unix seconds, "deadline": unix seconds or null} or a number of seconds',
  };
}

export class NodeDrain {
  private state: DrainState | null = null;
  private timer: NodeJS.Timeout | null = null;
  private unwatch: Unwatch | null = null;
  /** The destruction at the deadline, while under way. */
  private ending: Promise<void> | null = null;
  /** Announcements run one after another, in the order of the changes. */
  private announcing: Promise<void> = Promise.resolve();

  constructor(private readonly deps: NodeDrainDeps) {}

  /** The drain in force, or null. */
  get value(): DrainState | null {
    return this.state;
  }

  /** What drain and undrain answer. */
  status(): DrainStatus {
    return {
      draining: this.state !== null,
      since: this.state?.since ?? null,
      deadline: this.state?.deadline ?? null,
      kernels: this.deps.kernels.list().length,
    };
  }

  /** Reads the node's drain key and follows it; a drain found is in force before this resolves (before the pool fills). */
  async start(): Promise<void> {
    const key = drainKey(this.deps.agentId);
    const read = async () => this.fromKey(await this.deps.etcd.get(key));
    this.deps.kernels.admission = () => {
      if (this.state) throw this.refusal();
    };
    await read();
    this.unwatch = await this.deps.etcd.watchKey(key, (_k, v) => this.fromKey(v), {
      onResync: () =>
        void read().catch((err: unknown) => this.deps.log.warn('could not re-read the drain key', { error: errorMessage(err) })),
    });
  }

  /** drain: records the drain in etcd (so it outlives a restart) and puts it in force; a drain in force keeps its start. */
  async drain(deadlineSec: number | null): Promise<DrainStatus> {
    const now = Date.now() / 1000;
    const next: DrainState = { since: this.state?.since ?? now, deadline: deadlineSec === null ? null : now + deadlineSec };
    await this.deps.etcd.put(drainKey(this.deps.agentId), JSON.stringify(next));
    if (!this.forStop) this.enforce(next, 'drain asked'); // a stop's drain keeps its deadline; the key is for the next start
    return this.status();
  }

  /** undrain: deletes the drain key and takes kernels again (a drain for a stop stays in force). */
  async undrain(): Promise<DrainStatus> {
    await this.deps.etcd.delete(drainKey(this.deps.agentId));
    if (!this.forStop) this.enforce(null, 'undrain asked');
    return this.status();
  }

  /**
   * SIGTERM with sigterm_action drain: drains (without the key) and resolves
   * once the node holds no kernel, those left at `deadlineSec` destroyed with
   * reason node-drain. A drain in force keeps the earlier of the two deadlines.
   */
  async drainForStop(deadlineSec: number): Promise<void> {
    const now = Date.now() / 1000;
    const deadline = Math.min(now + deadlineSec, this.state?.deadline ?? Infinity);
    this.enforce({ since: this.state?.since ?? now, deadline }, 'stopping on SIGTERM (sigterm_action drain)');
    this.forStop = true; // from now on the key no longer changes the drain
    let tries = 0;
    while (this.deps.kernels.list().length > 0) {
      if (this.ending) {
        await this.ending;
        if (++tries >= 2 && this.deps.kernels.list().length > 0) {
          // What two destructions could not remove stays for the next start to find (a stop must not hang on it).
          this.deps.log.error('the drain could not destroy every kernel; stopping anyway', { kernels: this.deps.kernels.list().length });
          return;
        }
      } else await new Promise((r) => setTimeout(r, STOP_POLL_MS));
      if (this.ending === null && Date.now() / 1000 >= deadline && this.deps.kernels.list().length > 0) this.expire();
    }
    await this.ending;
  }

  /** Stops following the key and the deadline (the kernels stay); waits for a destruction under way. */
  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const unwatch = this.unwatch;
    this.unwatch = null;
    await unwatch?.().catch((err: unknown) => this.deps.log.warn('could not stop watching the drain key', { error: errorMessage(err) }));
    await this.ending;
    await this.announcing;
  }

  private refusal(): NodeDrainingError {
    const d = this.state?.deadline;
    return new NodeDrainingError(
      `node ${this.deps.agentId} is draining${d ? ` (its kernels end by ${new Date(d * 1000).toISOString()})` : ''} and takes no new kernels: ` +
        'create it on another node, or undrain this one (agentctl undrain)',
    );
  }

  private fromKey(value: string | null): void {
    if (this.forStop) return;
    if (value === null) {
      this.enforce(null, 'the drain key was deleted');
      return;
    }
    const now = Date.now() / 1000;
    const { state, bad } = parseDrainValue(value, now);
    if (bad)
      this.deps.log.warn('the drain key holds an unknown form; draining without deadline', {
        key: drainKey(this.deps.agentId),
        problem: bad,
      });
    if (!value.trim().startsWith('{')) {
      // A bare number or an empty value counts from now: written back as unix times, so that a restart keeps the clock.
      void this.deps.etcd
        .put(drainKey(this.deps.agentId), JSON.stringify(state))
        .catch((err: unknown) => this.deps.log.warn('could not write the drain key back with its times', { error: errorMessage(err) }));
    }
    this.enforce(state, 'the drain key was set');
  }

  /** The drain in force is the stop's: the key no longer changes it. */
  private forStop = false;

  private enforce(next: DrainState | null, why: string): void {
    const same = next === this.state || (next && this.state && next.since === this.state.since && next.deadline === this.state.deadline);
    if (same) return;
    const was = this.state;
    this.state = next;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (next?.deadline !== null && next?.deadline !== undefined) {
      // setTimeout holds at most ~24.8 days; a drain deadline is at most a week away (the drain method's bound).
      const ms = Math.max(0, next.deadline * 1000 - Date.now());
      this.timer = setTimeout(() => this.expire(), Math.min(ms, 2 ** 31 - 1));
      this.timer.unref();
    }
    this.deps.pool.setDraining(next !== null);
    if (next) {
      this.deps.log.info(was ? 'drain changed' : 'draining: new kernels are refused and the warm pool empties; running kernels stay', {
        why,
        since: new Date(next.since * 1000).toISOString(),
        deadline: next.deadline === null ? null : new Date(next.deadline * 1000).toISOString(),
        kernels: this.deps.kernels.list().length,
      });
    } else {
      this.deps.log.info('drain ended: new kernels are taken again and the warm pool refills', { why });
    }
    this.announcing = this.announcing.then(() =>
      this.deps
        .announce(next)
        .catch((err: unknown) =>
          this.deps.log.warn('could not say the drain in the registration in etcd; heartbeats still say it', { error: errorMessage(err) }),
        ),
    );
  }

  /** The deadline passed: destroys every kernel left with reason node-drain. */
  private expire(): void {
    this.timer = null;
    if (!this.state || this.ending) return;
    const left = this.deps.kernels.list().length;
    this.deps.log.warn('the drain deadline passed: destroying the kernels left', { kernels: left, reason: NODE_DRAIN_REASON });
    this.ending = this.deps.kernels
      .reset(NODE_DRAIN_REASON)
      .catch((err: unknown) => this.deps.log.error('the drain could not destroy every kernel left', { error: errorMessage(err) }))
      .finally(() => (this.ending = null));
  }
}
