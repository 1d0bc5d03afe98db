/**
 * The etcd key layout: every key the agent (and agentctl) reads or writes,
 * relative to the namespace prefix `/sorna/<namespace>/` (docs/wire-contract.rst,
 * "etcd"). Code names keys through these constants and functions only, so
 * the layout is written once.
 *
 *   nodes/manager                       the manager's id (a 2018 manager registers it)
 *   nodes/manager/event_addr            host:port of the manager's event sink (PULL)
 *   nodes/manager/public_key            the manager's CURVE public key (Z85)
 *   nodes/agents/<id>                   `starting` or `running` (leased)
 *   nodes/agents/<id>/{ip,addr,heartbeat}  leased with it
 *   nodes/agents/<id>/draining          while the agent drains: JSON {since, deadline} (leased with it)
 *   nodes/agents/<id>/drain             a drain asked of the node (not leased: it outlives a restart)
 *   nodes/agents/<id>/config/<setting>  per-node settings (win over the cluster's)
 *   config/agent/<setting>              cluster-wide settings; `pool/...` below them are the warm pool's
 *   config/agent/pool/demand            the cluster's pending demand (an input, not a setting)
 *   config/redis/{addr,password}        where modern managers' Redis is
 *   nodes/redis                         where the 2018 manager's Redis is (stats)
 *   config/docker/registry/<host>/{username,password}  a registry's credentials
 *   volumes/_mount                      the vfolder root kernels' mounts come from
 */

/** The manager's id; present once a manager has registered. */
export const MANAGER_KEY = 'nodes/manager';
/** `host:port` of the manager's event sink. */
export const EVENT_ADDR_KEY = 'nodes/manager/event_addr';
/** The manager's CURVE public key (40 Z85 characters); when present, events go out over CURVE. */
export const MANAGER_PUBLIC_KEY = 'nodes/manager/public_key';
/** `host:port` of the 2018 manager's Redis, where the kernels' stats go (database 0). */
export const LEGACY_REDIS_KEY = 'nodes/redis';

/** The prefix of every agent's registration. */
export const AGENTS_PREFIX = 'nodes/agents/';

/** The keys an agent writes below its registration (under its lease). */
export type AgentField = 'ip' | 'addr' | 'heartbeat' | 'draining';

/** The registration key of an agent (`nodes/agents/<id>`), whose value is its state. */
export function agentKey(agentId: string): string {
  return `${AGENTS_PREFIX}${agentId}`;
}

/** A key the agent writes below its registration, such as `nodes/agents/<id>/heartbeat`. */
export function agentFieldKey(agentId: string, field: AgentField): string {
  return `${agentKey(agentId)}/${field}`;
}

/**
 * The drain asked of an agent (`nodes/agents/<id>/drain`, src/services/drain.ts):
 * JSON `{"since": unix seconds, "deadline": unix seconds | null}`, or a bare
 * number of seconds from when the agent reads it. Written by agentctl, a
 * manager or an operator; not leased and kept when the agent deregisters,
 * so a drain outlives a restart until it is deleted (undrain).
 */
export function drainKey(agentId: string): string {
  return `${agentKey(agentId)}/${DRAIN_SUBKEY}`;
}

/** Below an agent's registration, the drain asked of it (kept when it deregisters). */
export const DRAIN_SUBKEY = 'drain';

/** What below an agent's registration holds its per-node settings (kept when it deregisters). */
export const AGENT_CONFIG_SUBKEY = 'config/';

/** The prefix of an agent's per-node settings, `nodes/agents/<id>/config/`. */
export function nodeConfigPrefix(agentId: string): string {
  return `${agentKey(agentId)}/${AGENT_CONFIG_SUBKEY}`;
}

/** The prefix of the cluster-wide settings. */
export const CLUSTER_CONFIG_PREFIX = 'config/agent/';

/** Where the settings of one agent come from: the cluster's prefix and the node's (which wins). */
export function settingPrefixes(agentId: string): { cluster: string; node: string } {
  return { cluster: CLUSTER_CONFIG_PREFIX, node: nodeConfigPrefix(agentId) };
}

/** Below a settings prefix, where the warm pool's keys are (`pool/types`, ...). */
export const POOL_SUBKEY = 'pool/';

/** Below a settings prefix, the cluster's pending demand (an input of the pool, not a setting). */
export const DEMAND_SUBKEY = `${POOL_SUBKEY}demand`;

/** The cluster's pending demand (JSON, src/services/demand.ts). */
export const DEMAND_KEY = `${CLUSTER_CONFIG_PREFIX}${DEMAND_SUBKEY}`;

/** The prefix of the Redis keys (modern managers' event stream). */
export const REDIS_PREFIX = 'config/redis/';
/** `host:port` of Redis. */
export const REDIS_ADDR_KEY = `${REDIS_PREFIX}addr`;
/** Redis's password; absent = none. */
export const REDIS_PASSWORD_KEY = `${REDIS_PREFIX}password`;

/** The keys of a registry's credentials (`host[:port]` as in the image name). */
export function registryCredentialKeys(host: string): { username: string; password: string } {
  const base = `config/docker/registry/${host}`;
  return { username: `${base}/username`, password: `${base}/password` };
}

/** The host folder vfolder mounts come from. */
export const VFOLDER_ROOT_KEY = 'volumes/_mount';
