/**
 * Registration of this agent in etcd (PROTOCOL.md section 3):
 * `nodes/agents/<id>` = `starting` then `running`, `nodes/agents/<id>/ip`,
 * `nodes/agents/<id>/addr` (**beyond**: the RPC address, for tools like agentctl),
 * and the tree removed on a clean shutdown, except the operator's node-level
 * settings under `nodes/agents/<id>/config/`, which must outlive a restart.
 * While running, the registration is checked every few seconds: an etcd
 * outage is logged once when it starts and once when it ends, and a key that
 * is missing or wrong when etcd answers (etcd lost its data, or someone swept
 * it) is written again.
 */
import type { EtcdStore } from '../adapters/etcd.js';
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';

/** How often a running agent checks its registration (and so notices an etcd outage). */
export const REGISTRATION_CHECK_MS = 5000;

/** The etcd key of an agent. */
export function agentKey(agentId: string): string {
  return `nodes/agents/${agentId}`;
}

export class Registration {
  private ip = '';
  private addr = '';
  private timer: NodeJS.Timeout | null = null;
  private checking: Promise<void> | null = null;
  private outageSince: number | null = null;

  constructor(
    private readonly etcd: EtcdStore,
    private readonly agentId: string,
    private readonly log: Logger,
  ) {}

  /** Registers as `starting` with the node's ip and the `tcp://host:port` of the RPC socket. */
  async starting(ip: string, addr: string): Promise<void> {
    this.ip = ip;
    this.addr = addr;
    await this.etcd.put(agentKey(this.agentId), 'starting');
    await this.etcd.put(`${agentKey(this.agentId)}/ip`, ip);
    await this.etcd.put(`${agentKey(this.agentId)}/addr`, addr);
  }

  /** Marks the agent running and from then on keeps the registration in place (see the file comment). */
  async running(checkMs = REGISTRATION_CHECK_MS): Promise<void> {
    await this.etcd.put(agentKey(this.agentId), 'running');
    const tick = () => {
      this.checking = this.check().finally(() => {
        this.checking = null;
        if (this.timer) this.timer = setTimeout(tick, checkMs);
      });
    };
    this.timer = setTimeout(tick, checkMs);
  }

  /** Stops the checks; waits for one under way. */
  async stopChecking(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.checking;
  }

  private async check(): Promise<void> {
    const key = agentKey(this.agentId);
    try {
      const [state, ip, addr] = await Promise.all([this.etcd.get(key), this.etcd.get(`${key}/ip`), this.etcd.get(`${key}/addr`)]);
      if (!this.timer) return; // stopped meanwhile: a deregistration may be under way
      if (state !== 'running' || ip !== this.ip || addr !== this.addr) {
        await this.etcd.put(`${key}/ip`, this.ip);
        await this.etcd.put(`${key}/addr`, this.addr);
        await this.etcd.put(key, 'running');
        this.log.warn('re-registered in etcd: the registration was missing or changed', { key, found: state });
      }
      if (this.outageSince !== null) {
        this.log.info('etcd answers again', { etcd: this.etcd.where, outageSec: Math.round((Date.now() - this.outageSince) / 1000) });
        this.outageSince = null;
      }
    } catch (err) {
      if (this.outageSince !== null) return; // said once already
      this.outageSince = Date.now();
      this.log.warn('etcd does not answer; the agent keeps serving RPC and heartbeats and re-checks its registration every few seconds', {
        etcd: this.etcd.where,
        error: errorMessage(err),
      });
    }
  }

  /** Removes `nodes/agents/<id>` and what the agent wrote below it; keeps `config/`. */
  async deregister(): Promise<void> {
    const key = agentKey(this.agentId);
    const below = await this.etcd.getPrefix(`${key}/`);
    const mine = Object.keys(below).filter((k) => !k.startsWith('config/'));
    await Promise.all(mine.map((k) => this.etcd.delete(`${key}/${k}`)));
    await this.etcd.delete(key);
  }
}
