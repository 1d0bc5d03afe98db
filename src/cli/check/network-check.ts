/**
 * The `agent check` entries of kernel networks: kernel isolation
 * (docs/security.rst, "Kernel networks": whether the firewall chains that
 * keep kernels apart can be installed here, iptables running and bridged
 * traffic passing it, and whether this agent's chains are in place now), and
 * the Docker Swarm of multi-node sessions.
 */
import { errorMessage } from '../../errors.js';
import { iptablesVersion } from '../../adapters/iptables.js';
import { DockerNetworks } from '../../adapters/docker-networks.js';
import { firewallPlan, missingChains } from '../../containers/firewall.js';
import { kernelBridgeName, requireBridgeFilter } from '../../containers/kernel-network.js';
import type { Check } from './types.js';

const FIX = 'run the agent as root on a host with iptables and br_netfilter (modprobe br_netfilter), or set kernel_isolation off';

/** The check. */
export const NETWORK_CHECK: Check = {
  name: 'kernel isolation',
  fix: FIX,
  async run({ options, settings }) {
    const s = await settings().then(
      (c) => c.settings,
      () => null,
    );
    const isolation = s?.kernelIsolation ?? 'on';
    // The warning that it is off is the security settings check's (src/config/security.ts).
    if (isolation === 'off') return { ok: true, detail: 'kernel_isolation is off: no firewall chains are installed' };
    let version: string;
    try {
      version = await iptablesVersion();
      await requireBridgeFilter();
    } catch (err) {
      return { ok: false, detail: `the chains cannot be installed: ${errorMessage(err)}; the agent refuses to start`, fix: FIX };
    }
    const plan = firewallPlan(options.agentId, kernelBridgeName(options.agentId), s?.kernelEgress ?? 'allow');
    const missing = await missingChains(plan);
    const chains = plan.map((c) => `${c.table}/${c.chain}`).join(', ');
    const now =
      missing.length === 0
        ? `its chains are in place (${chains})`
        : missing.length === plan.length
          ? `its chains (${chains}) are installed when the agent starts`
          : `some of its chains are missing (${missing.join(', ')}): the next start rebuilds them`;
    return { ok: true, detail: `${version} can keep kernels apart; kernel_egress ${s?.kernelEgress ?? 'allow'}; ${now}` };
  },
};

/**
 * The check of multi-node sessions (docs/fleet.rst, "Multi-node sessions"):
 * whether this node's engine is in a Docker Swarm, without which the agent
 * refuses them. Not being in one is fine (single-node sessions need none); a
 * swarm the engine cannot take part in (`error`, `locked`, `pending`) is a
 * warning.
 */
export const SWARM_CHECK: Check = {
  name: 'docker swarm',
  fix: 'check dockerd (docker info)',
  after: 'Docker reachable',
  async run({ docker }) {
    const state = await new DockerNetworks(docker.docker).swarmState();
    if (state === 'active')
      return { ok: true, detail: "the engine is in a swarm: multi-node sessions join their manager's overlay networks" };
    if (state === 'inactive')
      return { ok: true, detail: 'the engine is in no swarm: multi-node sessions are refused (docker swarm join serves them)' };
    return {
      ok: true,
      detail: `the engine's swarm state is ${state}: multi-node sessions are refused until it is active`,
      warnings: [
        `docker swarm state ${state}; fix: see docker info (a locked swarm needs docker swarm unlock, pending a reachable manager)`,
      ],
    };
  },
};
