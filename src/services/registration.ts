/**
 * Registration of this agent in etcd (PROTOCOL.md section 3):
 * `nodes/agents/<id>` = `starting` then `running`, `nodes/agents/<id>/ip`,
 * `nodes/agents/<id>/addr` (**beyond**: the RPC address, for tools like agentctl),
 * and the tree removed on a clean shutdown, except the operator's node-level
 * settings under `nodes/agents/<id>/config/`, which must outlive a restart.
 */
import type { EtcdStore } from '../adapters/etcd.js';

/** The etcd key of an agent. */
export function agentKey(agentId: string): string {
  return `nodes/agents/${agentId}`;
}

export class Registration {
  constructor(
    private readonly etcd: EtcdStore,
    private readonly agentId: string,
  ) {}

  /** Registers as `starting` with the node's ip and the `tcp://host:port` of the RPC socket. */
  async starting(ip: string, addr: string): Promise<void> {
    await this.etcd.put(agentKey(this.agentId), 'starting');
    await this.etcd.put(`${agentKey(this.agentId)}/ip`, ip);
    await this.etcd.put(`${agentKey(this.agentId)}/addr`, addr);
  }

  async running(): Promise<void> {
    await this.etcd.put(agentKey(this.agentId), 'running');
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
