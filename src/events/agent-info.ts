/**
 * The agent_info map that heartbeats carry: declared with the events, since
 * both the 2018 heartbeat (PUSH) and the modern one (the Redis stream) send
 * it, and the heartbeat service only fills it in.
 */
import type { NodeFigures } from '../node/stats.js';
import type { KernelStats } from '../rpc/results.js';

/** The agent_info map of heartbeats. */
export interface AgentInfo {
  ip: string;
  region: string;
  addr: string;
  mem_slots: number;
  cpu_slots: number;
  gpu_slots: number;
  /** snappy(msgpack([[name:tag, image id], ...])) */
  images: Buffer;
  /** Beyond: the node's figures (absent when they could not be read). */
  node?: NodeFigures;
  /** Beyond: cgroup figures of each running kernel, by kernel id. */
  kernel_stats?: Record<string, KernelStats>;
  /** The agent's CURVE public key (Z85) when RPC authentication is on; a 2018 manager ignores it. */
  public_key?: string;
  /** Beyond: whether the agent's firewall keeps kernels apart (`kernel_isolation`); a 2018 manager ignores it. */
  kernel_isolation?: 'on' | 'off';
  /** Beyond: present (true) while the node drains: it takes no new kernels (docs/agentctl.rst); a 2018 manager ignores it. */
  draining?: boolean;
}
