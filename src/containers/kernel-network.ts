/**
 * The kernel network: the bridge network the agent makes for its kernels
 * (never Docker's default bridge, where containers reach each other), with
 * traffic between containers off, and the firewall chains that keep kernels
 * from the host and from each other (src/containers/firewall.ts;
 * docs/security.rst, "Kernel networks"). The chains are installed at
 * start, before any container is made or re-adopted, and the network is
 * made when the first container joins it; at a clean stop both go unless
 * kernels still run on the network (then they stay and keep protecting them
 * until the next start takes them over).
 *
 * `kernel_isolation off` keeps the network but installs no chains: for a
 * host where iptables cannot be used, said at start, in heartbeats and by
 * `agent check`. With it on, a host that cannot take the chains stops the
 * start with a ConfigError that says so.
 */
import { promises as fs } from 'node:fs';
import { createHash } from 'node:crypto';
import { ConfigError, DockerError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { LABELS } from '../adapters/labels.js';
import type { BridgeNetwork, DockerNetworks } from '../adapters/docker-networks.js';
import {
  firewallPlan,
  installFirewall,
  KERNEL_BRIDGE_PREFIX,
  missingChains,
  removeFirewall,
  type ChainPlan,
  type KernelEgress,
} from './firewall.js';

/** Whether kernels are kept apart by the agent's firewall chains (`kernel_isolation`). */
export type KernelIsolation = 'on' | 'off';

/** The value of {@link LABELS.network} on the agent's kernel networks. */
const NETWORK_ROLE = 'kernels';

/** Where Linux says whether bridged traffic passes iptables (br_netfilter): the drop between kernels needs it. */
const BRIDGE_NF = '/proc/sys/net/bridge/bridge-nf-call-iptables';

/** The name of the agent's kernel network: `compute-agent.<agent id>`. */
export function kernelNetworkName(agentId: string): string {
  return `compute-agent.${agentId}`;
}

/** The bridge interface of an agent's kernel network: `cak-` and a hash of the id (interface names hold 15 characters). */
export function kernelBridgeName(agentId: string): string {
  return `${KERNEL_BRIDGE_PREFIX}${createHash('sha256').update(agentId).digest('hex').slice(0, 11)}`;
}

/** What the kernel network is now, for heartbeats, `agent check` and logs. */
export interface KernelNetworkState {
  network: string;
  bridge: string;
  isolation: KernelIsolation;
  egress: KernelEgress;
  /** The agent's chains (`table/name`) when isolation is on; empty when off. */
  chains: string[];
}

export class KernelNetwork {
  private plan: ChainPlan[] = [];
  private net: BridgeNetwork | null = null;
  private making: Promise<void> | null = null;

  constructor(
    private readonly o: {
      agentId: string;
      networks: DockerNetworks;
      log: Logger;
      isolation: KernelIsolation;
      egress: KernelEgress;
    },
  ) {}

  /** The Docker network kernels are created on. */
  get name(): string {
    return kernelNetworkName(this.o.agentId);
  }

  /** The state, as heartbeats report it. */
  state(): KernelNetworkState {
    return {
      network: this.name,
      bridge: this.net?.bridge ?? kernelBridgeName(this.o.agentId),
      isolation: this.o.isolation,
      egress: this.o.egress,
      chains: this.plan.map((c) => `${c.table}/${c.chain}`),
    };
  }

  /** The chains of this agent that are missing from the firewall now (`table/name`); empty when all are there or isolation is off. */
  missing(): Promise<string[]> {
    return missingChains(this.plan);
  }

  /**
   * With isolation on, rebuilds the chains (a ConfigError when they cannot
   * be); takes over the network if an earlier run left it. The network itself
   * is made when the first container joins it ({@link ready}): most of an
   * agent's starts make no kernel, and a network costs Docker an address pool.
   */
  async open(): Promise<void> {
    const existing = await this.o.networks.find(this.name);
    if (existing && existing.labels[LABELS.agent] !== this.o.agentId)
      throw new ConfigError(`the Docker network ${this.name} exists but is not this agent's: remove it (docker network rm ${this.name})`);
    this.net = existing;
    if (this.o.isolation === 'off') {
      this.o.log.warn(
        'kernel_isolation is off: no firewall keeps kernels from the host or from each other (docs/security.rst); turn it on where iptables can be used',
        { network: this.name },
      );
      return;
    }
    const plan = firewallPlan(this.o.agentId, existing?.bridge ?? kernelBridgeName(this.o.agentId), this.o.egress);
    try {
      await requireBridgeFilter();
      await installFirewall(plan);
    } catch (err) {
      await removeFirewall(plan).catch(() => undefined); // what was half made goes; its own failure says nothing new
      throw new ConfigError(
        `cannot install the firewall chains that keep kernels apart (${errorMessage(err)}): ` +
          'run the agent as root on a host with iptables and br_netfilter, or set kernel_isolation off to run kernels unisolated',
      );
    }
    this.plan = plan;
    this.o.log.info('kernel firewall ready', { ...this.state() });
  }

  /** Resolves once the network exists (made on the first call; a failed making is tried again by the next). */
  ready(): Promise<void> {
    if (this.net) return Promise.resolve();
    this.making ??= this.makeNetwork().then(
      (net) => {
        this.net = net;
        this.making = null;
      },
      (err: unknown) => {
        this.making = null;
        throw err;
      },
    );
    return this.making;
  }

  /**
   * The containers on this agent's session networks (docs/sessions.rst):
   * the same chains cover them, so they stay while any runs; one that
   * cannot be counted counts as running.
   */
  private async sessionContainers(): Promise<number> {
    try {
      let n = 0;
      for (const name of await this.o.networks.listByLabel(`${LABELS.agent}=${this.o.agentId}`))
        if (name !== this.name) n += (await this.o.networks.find(name))?.containers.length ?? 0;
      return n;
    } catch {
      return 1;
    }
  }

  /**
   * Takes the chains and the network out, unless containers still run on it
   * (kernels outlive the agent's stop: their protection stays until the next
   * start rebuilds it). Never throws.
   */
  async close(): Promise<void> {
    await this.making?.catch(() => undefined);
    const net = await this.o.networks.find(this.name).catch(() => null);
    const inSessions = await this.sessionContainers();
    if ((net && net.containers.length > 0) || inSessions > 0) {
      this.o.log.info('kernel network and its firewall chains kept: kernels still run on it or on session networks', {
        network: this.name,
        containers: net?.containers.length ?? 0,
        sessionContainers: inSessions,
      });
      return;
    }
    try {
      await removeFirewall(this.plan);
      this.plan = [];
      if (net) await this.o.networks.remove(this.name);
      this.net = null;
    } catch (err) {
      this.o.log.warn('could not remove the kernel network or its firewall chains', { network: this.name, error: errorMessage(err) });
    }
  }

  private async makeNetwork(): Promise<BridgeNetwork> {
    const bridge = kernelBridgeName(this.o.agentId);
    try {
      return await this.o.networks.create({
        name: this.name,
        bridge,
        labels: { [LABELS.agent]: this.o.agentId, [LABELS.network]: NETWORK_ROLE },
        interContainer: false,
      });
    } catch (err) {
      // Made meanwhile by another call of this agent (Docker answers 409): take it.
      const again = await this.o.networks.find(this.name).catch(() => null);
      if (again && again.labels[LABELS.agent] === this.o.agentId) return again;
      throw new DockerError(
        `cannot make the kernel network ${this.name} (${errorMessage(err)}): free an address pool (docker network prune) or check dockerd`,
        { cause: err },
      );
    }
  }
}

/**
 * Removes the chains and the network of the agent of this id, as its clean
 * stop does, for a tool or a test that killed it: what is already gone is
 * fine; a network with containers on it stays (Docker refuses).
 */
export async function removeKernelNetwork(agentId: string, networks: DockerNetworks): Promise<void> {
  await removeFirewall(firewallPlan(agentId, kernelBridgeName(agentId), 'allow')); // the hooks and names are the same for deny
  await networks.remove(kernelNetworkName(agentId));
}

/** Resolves when bridged traffic passes iptables (so kernels on one bridge can be kept apart); rejects saying why not. */
export async function requireBridgeFilter(): Promise<void> {
  const value = await fs.readFile(BRIDGE_NF, 'utf8').catch(() => null);
  if (value === null) throw new Error(`${BRIDGE_NF} is missing: load br_netfilter (modprobe br_netfilter)`);
  if (value.trim() !== '1') throw new Error(`${BRIDGE_NF} is ${value.trim()}: set it to 1 (sysctl net.bridge.bridge-nf-call-iptables=1)`);
}
