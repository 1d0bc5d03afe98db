/**
 * Registration of this agent in etcd (docs/wire-contract.rst, "etcd"):
 * `nodes/agents/<id>` = `starting` then `running`, `nodes/agents/<id>/ip`,
 * `nodes/agents/<id>/addr` (**beyond**: the RPC address, for tools like agentctl)
 * and the heartbeat record, all held by one etcd **lease** that the agent
 * keeps alive (TTL `registration_lease_ttl`, 15 s by default): a node that
 * dies or is cut off disappears from etcd by itself, while a clean stop
 * revokes the lease and so deletes the keys at once. The operator's
 * node-level settings under `nodes/agents/<id>/config/` are not leased and
 * outlive a restart.
 *
 * A lost lease (it expired while etcd was unreachable, or someone revoked
 * it) is re-granted and the keys written again, with a jittered backoff and
 * one log line when the loss starts and one when it is healed. While
 * running, the keys are also checked every few seconds: an etcd outage is
 * logged once when it starts and once when it ends, and a key that is
 * missing or wrong when etcd answers is written again.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import { backoffDelay, Outage } from '../util/backoff.js';
import { ETCD_BACKOFF, type EtcdStore, type StoreLease } from '../adapters/etcd.js';
import { AGENT_CONFIG_SUBKEY, agentFieldKey, agentKey, DRAIN_SUBKEY, type AgentField } from '../config/etcd-keys.js';

/** How often a running agent checks its registration (and so notices an etcd outage). */
export const REGISTRATION_CHECK_MS = 5000;

export class Registration {
  private ip = '';
  private addr = '';
  private state: 'starting' | 'running' = 'starting';
  private timer: NodeJS.Timeout | null = null;
  private checking: Promise<void> | null = null;
  private regranting: Promise<void> | null = null;
  private readonly etcdOutage = new Outage();
  private readonly leaseOutage = new Outage();
  private lease: StoreLease | null = null;
  /** The lease's TTL (registration_lease_ttl), set by {@link starting}. */
  private ttlSec = 0;
  private stopped = false;
  /** Whether the keys were written once: only a held registration is re-granted. */
  private held = false;
  /** Extra leased keys below the registration (e.g. `heartbeat`), rewritten with the rest after a loss. */
  private readonly extra = new Map<AgentField, string>();

  constructor(
    private readonly etcd: EtcdStore,
    private readonly agentId: string,
    private readonly log: Logger,
  ) {}

  /** How many times the lease was re-granted after a loss (for tests and metrics). */
  regrants = 0;

  /** The id (hex) of the lease in force, or null before one is granted. */
  async leaseId(): Promise<string | null> {
    return this.lease ? this.lease.id() : null;
  }

  /** Registers as `starting` with the node's ip and the `tcp://host:port` of the RPC socket, under a new lease of `ttlSec`. */
  async starting(ip: string, addr: string, ttlSec: number): Promise<void> {
    this.ip = ip;
    this.addr = addr;
    this.ttlSec = ttlSec;
    this.state = 'starting';
    this.lease = this.newLease();
    try {
      await this.writeAll(this.lease);
      this.held = true;
    } catch (err) {
      this.lease.release();
      this.lease = null;
      throw err;
    }
  }

  /** Marks the agent running and from then on keeps the registration in place (see the file comment). */
  async running(checkMs = REGISTRATION_CHECK_MS): Promise<void> {
    this.state = 'running';
    await this.put(agentKey(this.agentId), 'running');
    const tick = () => {
      this.checking = this.check().finally(() => {
        this.checking = null;
        if (this.timer) this.timer = setTimeout(tick, checkMs);
      });
    };
    this.timer = setTimeout(tick, checkMs);
  }

  /** Puts a key below the registration (`nodes/agents/<id>/<sub>`) under the lease, so it goes with the node. */
  async record(sub: AgentField, value: string): Promise<void> {
    this.extra.set(sub, value);
    await this.put(agentFieldKey(this.agentId, sub), value);
  }

  /** Removes a key {@link record} put (it is no longer rewritten after a loss). */
  async forget(sub: AgentField): Promise<void> {
    if (!this.extra.delete(sub)) return;
    await this.etcd.delete(agentFieldKey(this.agentId, sub));
  }

  /** Stops the checks and the re-grants; waits for those under way. */
  async stopChecking(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.checking;
    await this.regranting;
  }

  private async put(key: string, value: string): Promise<void> {
    if (!this.lease) throw new Error('not registered: no lease');
    await this.lease.put(key, value);
  }

  private newLease(): StoreLease {
    const lease = this.etcd.lease(this.ttlSec);
    lease.onLost((err) => this.onLost(lease, err));
    return lease;
  }

  private async writeAll(lease: StoreLease): Promise<void> {
    const key = agentKey(this.agentId);
    await lease.put(agentFieldKey(this.agentId, 'ip'), this.ip);
    await lease.put(agentFieldKey(this.agentId, 'addr'), this.addr);
    for (const [sub, v] of this.extra) await lease.put(agentFieldKey(this.agentId, sub), v);
    await lease.put(key, this.state);
  }

  private onLost(lease: StoreLease, err: Error): void {
    if (this.stopped || !this.held || lease !== this.lease) return;
    if (this.leaseOutage.fail()) {
      this.log.warn('the etcd lease of the registration was lost; re-granting it and writing the registration again', {
        etcd: this.etcd.where,
        ttlSec: this.ttlSec,
        error: errorMessage(err),
      });
    }
    this.regranting ??= this.regrant().finally(() => {
      this.regranting = null;
    });
  }

  /** Grants a new lease and writes the keys under it, retrying with a jittered backoff until it works or the agent stops. */
  private async regrant(): Promise<void> {
    for (let attempt = 1; !this.stopped; attempt++) {
      const lease = this.newLease();
      this.lease = lease;
      try {
        await this.writeAll(lease);
        if (this.stopped) return;
        this.regrants++;
        const ms = this.leaseOutage.recover();
        this.log.info('registration re-granted: a new etcd lease holds it', {
          id: await lease.id(),
          lostSec: ms === null ? 0 : Math.round(ms / 1000),
        });
        return;
      } catch {
        lease.release();
        await sleep(backoffDelay(attempt, ETCD_BACKOFF));
      }
    }
  }

  private async check(): Promise<void> {
    const key = agentKey(this.agentId);
    try {
      const [state, ip, addr] = await Promise.all([
        this.etcd.get(key),
        this.etcd.get(agentFieldKey(this.agentId, 'ip')),
        this.etcd.get(agentFieldKey(this.agentId, 'addr')),
      ]);
      if (!this.timer || this.regranting) return; // stopped meanwhile, or a re-grant is writing the keys
      if (state !== 'running' || ip !== this.ip || addr !== this.addr) {
        await this.writeAll(this.lease!);
        this.log.warn('re-registered in etcd: the registration was missing or changed', { key, found: state });
      }
      const ms = this.etcdOutage.recover();
      if (ms !== null) this.log.info('etcd answers again', { etcd: this.etcd.where, outageSec: Math.round(ms / 1000) });
    } catch (err) {
      if (!this.etcdOutage.fail()) return; // said once already
      this.log.warn(
        'etcd does not answer; the agent keeps serving RPC and heartbeats with its last settings and re-checks its registration every few seconds',
        {
          etcd: this.etcd.where,
          error: errorMessage(err),
        },
      );
    }
  }

  /** Revokes the lease (its keys go at once) and removes anything else the agent wrote below `nodes/agents/<id>`; keeps `config/` and `drain`. */
  async deregister(): Promise<void> {
    this.stopped = true;
    const lease = this.lease;
    this.lease = null;
    if (lease) await lease.revoke().catch(() => lease.release());
    const key = agentKey(this.agentId);
    const below = await this.etcd.getPrefix(`${key}/`);
    const mine = Object.keys(below).filter((k) => !k.startsWith(AGENT_CONFIG_SUBKEY) && k !== DRAIN_SUBKEY);
    await Promise.all(mine.map((k) => this.etcd.delete(`${key}/${k}`)));
    await this.etcd.delete(key);
  }
}
