/**
 * Session networks: the bridge network of one multi-kernel session on this
 * agent (docs/sessions.rst), made by `create_local_network` under the name
 * the manager chose and removed by `destroy_local_network`. Its bridge
 * interface is named `cas-` and a hash, so that the agent's firewall chains
 * (src/containers/firewall.ts) cover it by that prefix: the kernels of the
 * session reach each other on every port (Docker's inter-container traffic
 * is on for this bridge, and the chains let traffic bridged within it
 * pass), while the host, other sessions, the kernel network and other
 * container networks stay out of reach. A network is the agent's by its
 * labels; kernels join only such a network, never one of another's making.
 */
import { createHash } from 'node:crypto';
import { DockerError, ParametersError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { LABELS } from '../adapters/labels.js';
import type { BridgeNetwork, DockerNetworks } from '../adapters/docker-networks.js';
import { SESSION_BRIDGE_PREFIX } from './firewall.js';
import { kernelNetworkName } from './kernel-network.js';

/** The value of {@link LABELS.network} on session networks. */
const NETWORK_ROLE = 'session';

/** A name the manager may give a session network (24.09 sends `bai-singlenode-<session uuid>`). */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Names Docker gives a meaning of its own, never a session's. */
const DOCKER_NAMES = new Set(['host', 'bridge', 'none', 'default']);

/** Refuses a name that cannot be a session's network (a bridge here or a multi-node session's overlay): a ParametersError. */
export function checkNetworkName(name: string, agentId: string): void {
  if (!NAME.test(name) || DOCKER_NAMES.has(name) || name === kernelNetworkName(agentId))
    throw new ParametersError(
      `network_name ${JSON.stringify(name.slice(0, 140))} cannot name a session network: use letters, digits, "_", "." and "-" (at most 128), not a name of Docker's or the kernel network's`,
    );
}

/** The bridge interface of a session network: `cas-` and a hash of the agent id and the network name (15 characters). */
export function sessionBridgeName(agentId: string, network: string): string {
  return `${SESSION_BRIDGE_PREFIX}${createHash('sha256').update(`${agentId}\0${network}`).digest('hex').slice(0, 11)}`;
}

/**
 * The session networks of one agent: made, checked before kernels join,
 * removed, and swept at start when left without kernels.
 */
export class SessionNetworks {
  constructor(private readonly o: { agentId: string; networks: DockerNetworks; log: Logger }) {}

  private checkName(name: string): void {
    checkNetworkName(name, this.o.agentId);
  }

  private ours(net: BridgeNetwork): boolean {
    return net.labels[LABELS.agent] === this.o.agentId && net.labels[LABELS.network] === NETWORK_ROLE;
  }

  /** Makes the session network (a repeat of an existing one of this agent is fine); a ParametersError when the name is taken by another network. */
  async create(name: string): Promise<void> {
    this.checkName(name);
    const existing = await this.o.networks.find(name);
    if (existing) {
      if (this.ours(existing)) return;
      throw new ParametersError(`the Docker network ${name} exists and is not a session network of this agent: choose another name`);
    }
    const bridge = sessionBridgeName(this.o.agentId, name);
    try {
      await this.o.networks.create({
        name,
        bridge,
        labels: { [LABELS.agent]: this.o.agentId, [LABELS.network]: NETWORK_ROLE },
        interContainer: true,
      });
    } catch (err) {
      const again = await this.o.networks.find(name).catch(() => null);
      if (again && this.ours(again)) return; // made meanwhile by a repeated call
      throw new DockerError(`cannot make the session network ${name} (${errorMessage(err)}): free an address pool or check dockerd`, {
        cause: err,
      });
    }
    this.o.log.info('session network made', { network: name, bridge });
  }

  /**
   * Resolves when kernels may join the network: it exists and this agent
   * made it as a session network. Anything else is a ParametersError, so
   * that a kernel never lands on a network outside the firewall's cover.
   */
  async check(name: string): Promise<void> {
    this.checkName(name);
    const net = await this.o.networks.find(name);
    if (!net || !this.ours(net))
      throw new ParametersError(
        `network_name ${name} is not a session network of this agent: call create_local_network(${JSON.stringify(name)}) first`,
      );
  }

  /** Removes the network; one already gone is fine; one still holding kernels is refused (destroy them first). */
  async destroy(name: string): Promise<void> {
    this.checkName(name);
    const net = await this.o.networks.find(name);
    if (!net) return;
    if (!this.ours(net)) throw new ParametersError(`the Docker network ${name} is not a session network of this agent: it is left alone`);
    if (net.containers.length > 0)
      throw new ParametersError(
        `the session network ${name} still has ${net.containers.length} kernel(s) on it: destroy the session's kernels first`,
      );
    await this.o.networks.remove(name);
    this.o.log.info('session network removed', { network: name });
  }

  /**
   * Removes this agent's session networks that have no container on them:
   * left by a crash, or by a manager that never called destroy_local_network.
   * Runs at start, after the kernels were re-adopted; never throws.
   */
  async sweep(): Promise<string[]> {
    const removed: string[] = [];
    try {
      for (const name of await this.o.networks.listByLabel(`${LABELS.network}=${NETWORK_ROLE}`)) {
        const net = await this.o.networks.find(name);
        if (!net || !this.ours(net) || net.containers.length > 0) continue;
        await this.o.networks.remove(name);
        removed.push(name);
      }
    } catch (err) {
      this.o.log.warn('could not sweep session networks left without kernels', { error: errorMessage(err) });
    }
    if (removed.length) this.o.log.info('session networks without kernels removed at start', { networks: removed });
    return removed;
  }
}
