/**
 * DockerNetworks is the agent's adapter to Docker's network API: a bridge
 * network made (or found again) by name with labels and bridge options, what
 * it is (id, bridge interface, subnets, containers on it), and its removal.
 * Failures become our errors here.
 */
import type Docker from 'dockerode';
import { castDockerError } from './docker.js';

/** A bridge network as the agent sees it. */
export interface BridgeNetwork {
  id: string;
  name: string;
  /** The host's interface of the bridge (`com.docker.network.bridge.name`). */
  bridge: string;
  /** Its IPv4 subnets, e.g. `172.18.0.0/16`. */
  subnets: string[];
  labels: Record<string, string>;
  /** Ids of the containers attached to it now. */
  containers: string[];
}

/** Any Docker network as the agent checks it before a kernel joins it (a multi-node session's overlay). */
export interface NetworkView {
  id: string;
  name: string;
  /** `bridge`, `overlay`, `macvlan`, ... */
  driver: string;
  /** `local`, `swarm` or `global`. */
  scope: string;
  attachable: boolean;
  labels: Record<string, string>;
}

/** What a bridge network is made with. */
export interface BridgeRequest {
  name: string;
  /** Name of the host's bridge interface (at most 15 characters). */
  bridge: string;
  labels: Record<string, string>;
  /** Whether containers on it may reach each other through the bridge (Docker's enable_icc). */
  interContainer: boolean;
}

const BRIDGE_NAME = 'com.docker.network.bridge.name';
const ICC = 'com.docker.network.bridge.enable_icc';

const isNotFound = (err: unknown) => (err as { statusCode?: number }).statusCode === 404;

interface NetworkInfo {
  Id: string;
  Name: string;
  Driver?: string;
  Scope?: string;
  Attachable?: boolean;
  Options?: Record<string, string>;
  Labels?: Record<string, string>;
  IPAM?: { Config?: Array<{ Subnet?: string }> };
  Containers?: Record<string, unknown>;
}

export class DockerNetworks {
  constructor(private readonly docker: Docker) {}

  /** The network of that name, or null when there is none. */
  async find(name: string): Promise<BridgeNetwork | null> {
    try {
      const info = (await this.docker.getNetwork(name).inspect()) as NetworkInfo;
      // Docker also matches an id prefix: only the exact name counts.
      if (info.Name !== name) return null;
      return {
        id: info.Id,
        name: info.Name,
        bridge: info.Options?.[BRIDGE_NAME] ?? `br-${info.Id.slice(0, 12)}`,
        subnets: (info.IPAM?.Config ?? []).map((c) => c.Subnet).filter((s): s is string => typeof s === 'string' && !s.includes(':')),
        labels: info.Labels ?? {},
        containers: Object.keys(info.Containers ?? {}),
      };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw castDockerError(err, `inspecting network ${name}`);
    }
  }

  /** Any network by exact name or by id, or null when this engine knows none (a worker sees a Swarm network only once a container of its joined it). */
  async describe(nameOrId: string): Promise<NetworkView | null> {
    try {
      const info = (await this.docker.getNetwork(nameOrId).inspect()) as NetworkInfo;
      if (info.Name !== nameOrId && info.Id !== nameOrId) return null; // Docker also matches an id prefix
      return {
        id: info.Id,
        name: info.Name,
        driver: info.Driver ?? '',
        scope: info.Scope ?? '',
        attachable: info.Attachable === true,
        labels: info.Labels ?? {},
      };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw castDockerError(err, `inspecting network ${nameOrId}`);
    }
  }

  /** The id of the network a container joined under that name, or null when it is on no such network. */
  async joinedId(containerId: string, name: string): Promise<string | null> {
    try {
      const info = await this.docker.getContainer(containerId).inspect();
      return info.NetworkSettings?.Networks?.[name]?.NetworkID || null;
    } catch (err) {
      throw castDockerError(err, `inspecting container ${containerId.slice(0, 12)}`);
    }
  }

  /** This engine's state in a Docker Swarm (`docker info` Swarm.LocalNodeState): `active`, `inactive`, `pending`, `error` or `locked`. */
  async swarmState(): Promise<string> {
    try {
      const info = (await this.docker.info()) as { Swarm?: { LocalNodeState?: string } };
      return info.Swarm?.LocalNodeState || 'inactive';
    } catch (err) {
      throw castDockerError(err, "reading the engine's swarm state");
    }
  }

  /** Makes the bridge network (IPv4 only, subnet from Docker's address pools); resolves with it. */
  async create(req: BridgeRequest): Promise<BridgeNetwork> {
    try {
      await this.docker.createNetwork({
        Name: req.name,
        Driver: 'bridge',
        CheckDuplicate: true,
        Labels: req.labels,
        Options: { [BRIDGE_NAME]: req.bridge, [ICC]: String(req.interContainer) },
      });
    } catch (err) {
      throw castDockerError(err, `creating network ${req.name}`);
    }
    const made = await this.find(req.name);
    if (!made) throw castDockerError(new Error('it vanished just after it was made'), `creating network ${req.name}`);
    return made;
  }

  /** Removes the network; one already gone is fine. */
  async remove(name: string): Promise<void> {
    try {
      await this.docker.getNetwork(name).remove();
    } catch (err) {
      if (isNotFound(err)) return;
      throw castDockerError(err, `removing network ${name}`);
    }
  }

  /** Names of the networks carrying a label (`key=value`). */
  async listByLabel(label: string): Promise<string[]> {
    try {
      const list = (await this.docker.listNetworks({ filters: { label: [label] } })) as NetworkInfo[];
      return list.map((n) => n.Name);
    } catch (err) {
      throw castDockerError(err, 'listing networks');
    }
  }
}
