/**
 * The cluster information of a modern manager's `create_kernels`
 * (24.09's `ClusterInfo`; docs/sessions.rst): which session network the
 * kernels join, and the `BACKENDAI_CLUSTER_*` variables each kernel of the
 * session sees. The manager sets those variables in each kernel's
 * `environ` too; what it sends wins, so that a session spread over several
 * agents sees one view, and the agent fills in what is missing from the
 * call itself (the kernels of a single-node session all come in one call).
 */
import { ParametersError } from '../errors.js';
import type { KernelSpec } from '../containers/spec.js';
import { readSshKeypair, type SshKeypair } from './cluster-ssh.js';

/** The session's cluster mode: all its kernels on one node, or spread over several. */
export type ClusterMode = 'single-node' | 'multi-node';

/** What the agent reads of `raw_cluster_info`. */
export interface ClusterInfo {
  mode: ClusterMode;
  /**
   * The session network the kernels join: a bridge of this agent's (made by
   * create_local_network), or with `overlay` the manager's Docker Swarm
   * overlay network (src/containers/session-overlay.ts); null: each kernel on the kernel network.
   */
  network: string | null;
  /** Whether `network` is a Swarm overlay network (a multi-node session's), joined beside the kernel network. */
  overlay: boolean;
  size: number | null;
  replicas: Record<string, number> | null;
  /** `ssh_keypair`, the session's key pair for ssh among its kernels; null: the agent makes one. */
  ssh: SshKeypair | null;
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);

/** A cluster hostname: one DNS label (main1, sub1, ...), the name the other kernels resolve. */
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/**
 * Reads `raw_cluster_info`: `mode`, and the network as `network_name`
 * (24.09) or `network_config` with its mode (later releases: `bridge` for a
 * single-node session, `overlay` for a multi-node one). A ParametersError
 * for what this agent cannot serve (host networking, a multi-node session on
 * a bridge, or without its overlay network).
 */
export function readClusterInfo(raw: Record<string, unknown>): ClusterInfo {
  const mode = raw.mode ?? 'single-node';
  if (mode !== 'single-node' && mode !== 'multi-node')
    throw new ParametersError(`cluster_info mode ${JSON.stringify(mode)} is not supported (single-node and multi-node are)`);
  const nc = raw.network_config;
  let network: unknown = raw.network_name;
  let kind: unknown = null;
  if (isMap(nc)) {
    kind = nc.mode ?? null;
    if (kind !== null && kind !== 'bridge' && kind !== 'overlay')
      throw new ParametersError(`cluster_info network_config mode ${JSON.stringify(kind)} is not supported (bridge and overlay are)`);
    if (network === undefined) network = nc.network_name;
  }
  if (network === 'host')
    throw new ParametersError('cluster_info network_name "host" is not supported: kernels never share the host\'s network here');
  if (network !== undefined && network !== null && typeof network !== 'string')
    throw new ParametersError('cluster_info network_name must be a str or nil');
  const overlay = kind === 'overlay' || (kind === null && mode === 'multi-node');
  if (mode === 'multi-node' && !overlay)
    throw new ParametersError(
      'cluster_info: a multi-node session needs an overlay network (network_config mode overlay), not a bridge of one node',
    );
  if (overlay && !network)
    throw new ParametersError(
      'cluster_info: a multi-node session needs network_name, the Docker Swarm overlay network its kernels join (docs/fleet.rst, "Multi-node sessions")',
    );
  const size = typeof raw.size === 'number' && Number.isInteger(raw.size) && raw.size > 0 ? raw.size : null;
  const replicas = isMap(raw.replicas)
    ? Object.fromEntries(Object.entries(raw.replicas).filter((e): e is [string, number] => typeof e[1] === 'number'))
    : null;
  // the key pair is for ssh among a session's kernels: read (and refused when bad) only for a session network
  return { mode, network: network || null, overlay, size, replicas, ssh: network ? readSshKeypair(raw.ssh_keypair) : null };
}

/** A kernel config's cluster fields as the cluster variables read them. */
interface Member {
  role: string;
  idx: number;
  hostname: string;
}

function memberOf(config: Record<string, unknown>, position: number): Member {
  const role = typeof config.cluster_role === 'string' ? config.cluster_role : 'main';
  const idx = typeof config.cluster_idx === 'number' ? config.cluster_idx : position + 1;
  const hostname = typeof config.cluster_hostname === 'string' ? config.cluster_hostname : `${role}${idx}`;
  return { role, idx, hostname };
}

/** The cluster hostname of a config of a session on a session network; a ParametersError when it is no DNS label. */
export function clusterHostnameOf(config: Record<string, unknown>, position: number): string {
  const { hostname } = memberOf(config, position);
  if (!HOSTNAME.test(hostname))
    throw new ParametersError(
      `config cluster_hostname ${JSON.stringify(hostname.slice(0, 80))} must be one DNS label such as main1 or sub2`,
    );
  return hostname;
}

/**
 * The configs with the cluster variables added to each `environ` where
 * the manager did not set them: BACKENDAI_CLUSTER_MODE, _SIZE, _REPLICAS,
 * _HOSTS (the whole session), _ROLE, _IDX, _HOST, _LOCAL_RANK (the kernel).
 */
export function withClusterEnviron(configs: Array<Record<string, unknown>>, info: ClusterInfo): Array<Record<string, unknown>> {
  const members = configs.map(memberOf);
  const replicas = info.replicas ?? members.reduce<Record<string, number>>((r, m) => ({ ...r, [m.role]: (r[m.role] ?? 0) + 1 }), {});
  const session = {
    BACKENDAI_CLUSTER_MODE: info.mode,
    BACKENDAI_CLUSTER_SIZE: String(info.size ?? configs.length),
    BACKENDAI_CLUSTER_REPLICAS: Object.entries(replicas)
      .map(([role, n]) => `${role}:${n}`)
      .join(','),
    BACKENDAI_CLUSTER_HOSTS: members.map((m) => m.hostname).join(','),
  };
  return configs.map((config, i) => {
    const m = members[i]!;
    const own = {
      BACKENDAI_CLUSTER_ROLE: m.role,
      BACKENDAI_CLUSTER_IDX: String(m.idx),
      BACKENDAI_CLUSTER_HOST: m.hostname,
      BACKENDAI_CLUSTER_LOCAL_RANK: String(i),
    };
    if (config.environ !== undefined && config.environ !== null && !isMap(config.environ)) return config; // the config's reading refuses it
    const environ = isMap(config.environ) ? config.environ : {};
    return { ...config, environ: { ...session, ...own, ...environ } };
  });
}

/**
 * The spec of a session's kernel restarted with a full config: the cluster
 * variables it had stay unless that config sets them (a restart's call
 * carries no cluster info to derive them from again).
 */
export function keepClusterEnviron(current: KernelSpec, next: KernelSpec): KernelSpec {
  if (!current.cluster) return next;
  const kept = Object.entries(current.environ).filter(([k]) => k.startsWith('BACKENDAI_CLUSTER_'));
  return { ...next, environ: { ...Object.fromEntries(kept), ...next.environ } };
}
