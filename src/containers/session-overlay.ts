/**
 * Session overlays: the Docker Swarm overlay network of a multi-node
 * session (docs/sessions.rst, "Multi-node sessions"), which the manager
 * makes on a swarm manager node (attachable, labelled
 * `ai.backend.cluster-network`) and removes when the session ends; the
 * kernels of the session on every agent join it by name and resolve each
 * other there by their cluster hostnames.
 *
 * Such a kernel joins the overlay *beside* the agent's kernel network
 * (src/containers/launch.ts): the kernel network, under the firewall's
 * chains, is its way to its published ports and beyond the node, so Docker
 * gives it no `docker_gwbridge` leg, and the overlay, whose bridge sits in a
 * network namespace of Docker's own with no route out, carries only the
 * session's traffic between its kernels. Before anything is made the agent
 * checks what it can see (this engine is in a swarm; a network of that name
 * this engine knows is such an overlay: a worker knows one only once a
 * container of its joined it), and after the start the network the kernel
 * joined, so that a kernel never stays on a network that is not a session's
 * overlay (a bridge of another session or agent, an operator's overlay).
 */
import { KernelCreationError, ParametersError } from '../errors.js';
import type { DockerNetworks, NetworkView } from '../adapters/docker-networks.js';
import { checkNetworkName } from './session-network.js';

/** The label a modern manager puts on the overlay network of a multi-node session (Backend.AI's overlay plugin). */
export const CLUSTER_NETWORK_LABEL = 'ai.backend.cluster-network';

/** Why a network cannot be a session's overlay; empty: it can. */
export function overlayProblems(net: Pick<NetworkView, 'driver' | 'scope' | 'attachable' | 'labels'>): string[] {
  return [
    ...(net.driver !== 'overlay' ? [`its driver is ${net.driver || 'unknown'}, not overlay`] : []),
    ...(net.scope !== 'swarm' ? [`its scope is ${net.scope || 'unknown'}, not swarm`] : []),
    ...(!net.attachable ? ['it is not attachable'] : []),
    ...(net.labels[CLUSTER_NETWORK_LABEL] !== '1' ? [`it lacks the label ${CLUSTER_NETWORK_LABEL}=1 of a session network`] : []),
  ];
}

export class SessionOverlays {
  constructor(private readonly o: { agentId: string; networks: Pick<DockerNetworks, 'describe' | 'joinedId' | 'swarmState'> }) {}

  private refuse(name: string, problems: string[]): never {
    throw new ParametersError(
      `network_name ${name} is not the overlay network of a multi-node session (${problems.join('; ')}): the manager makes one per session, attachable, on a swarm manager node`,
    );
  }

  /** Resolves when kernels may try to join the overlay: this engine is in a swarm, and a network of that name it knows is a session overlay. */
  async check(name: string): Promise<void> {
    checkNetworkName(name, this.o.agentId);
    const state = await this.o.networks.swarmState();
    if (state !== 'active')
      throw new KernelCreationError(
        `this node's Docker engine is not in a swarm (its state: ${state}): a multi-node session's kernels join an overlay network of the swarm; join the node with docker swarm join (docs/fleet.rst, "Multi-node sessions")`,
      );
    const known = await this.o.networks.describe(name);
    if (known) {
      const problems = overlayProblems(known);
      if (problems.length) this.refuse(name, problems);
    }
  }

  /** Resolves when the started container sits on a session overlay under that name; a ParametersError otherwise (the caller destroys the kernel). */
  async verify(containerId: string, name: string): Promise<void> {
    const id = await this.o.networks.joinedId(containerId, name);
    if (!id) this.refuse(name, ['the kernel is not on it after its start']);
    const net = await this.o.networks.describe(id);
    if (!net) this.refuse(name, ['it vanished as the kernel joined it']);
    const problems = overlayProblems(net);
    if (problems.length) this.refuse(name, problems);
  }
}
