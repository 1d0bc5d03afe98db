/**
 * DockerEngine is the agent's adapter to the Docker engine: kernel images,
 * kernel containers (create, start, inspect, list by label, remove, logs) and
 * their deaths, read from the events stream (docker-events.ts), which
 * reconnects by itself when dockerd restarts. Every dockerode failure becomes
 * one of our errors here (`castDockerError`).
 */
import Docker from 'dockerode';
import { DockerError, errorMessage, ImageNotFoundError } from '../errors.js';
import type { Logger } from '../log.js';
import { followEvents } from './docker-events.js';
import { readLogTail, type LogTail } from './docker-logs.js';

/** Bytes of a container's output that one read of its log (get_logs, a dead kernel's last output) returns at most. */
export const LOG_TAIL_BYTES = 1024 * 1024;

/** A kernel image as the heartbeat lists it: `name:tag` without the prefix, and the image id. */
export type KernelImage = [nameTag: string, imageId: string];

/** The container ports of the kernel runner (docs/wire-contract.rst, "Kernel runner ports"). */
export const KERNEL_PORTS = [2000, 2001, 2002, 2003] as const;

/** What the agent asks Docker for when it creates a kernel container. */
export interface ContainerRequest {
  name: string;
  image: string;
  labels: Record<string, string>;
  env: string[];
  binds: string[];
  memoryBytes: number;
  cpusetCpus: string;
  /** Relative CPU weight (Docker's default 1024); warm pooled containers get a low one. */
  cpuShares?: number;
  /** Host address the runner ports are published on. */
  publishHost: string;
  /** Container ports published besides 2000-2003 (the image's service ports). */
  servicePorts?: number[];
  /** The host port of each published container port (src/ports/); absent: Docker's ephemeral ports. */
  hostPorts?: Record<number, number>;
  /** Memory nodes (Docker's CpusetMems); empty or absent: every node. */
  cpusetMems?: string;
  /** Device nodes given to the container (a GPU's /dev/nvidiaN on the device-node path). */
  devices?: Array<{ PathOnHost: string; PathInContainer: string; CgroupPermissions: string }>;
  /** Device requests for a device driver (the NVIDIA toolkit). */
  deviceRequests?: Array<{ Driver: string; DeviceIDs: string[]; Capabilities: string[][] }>;
  /** A Docker runtime other than the default (`nvidia`); null or absent: the default. */
  runtime?: string | null;
  /** The lock-down of the container (README, Security). */
  security: ContainerSecurity;
  /** The Docker network it joins (the agent's kernel network); absent: Docker's default bridge. */
  network?: string;
  /** Names the container is known by on that network besides its own (Docker's embedded DNS answers them). */
  networkAliases?: string[];
  /** A Swarm overlay network it joins as well (connected between create and start), with its names there. */
  overlay?: { name: string; aliases: string[] };
  /** The container's hostname; absent: Docker's (the id's prefix). */
  hostname?: string;
  /** Bytes of its /dev/shm (HostConfig.ShmSize); absent: Docker's 64 MiB. */
  shmBytes?: number;
  /** The command in place of the image's ENTRYPOINT and CMD (the injected runner's entrypoint); absent: the image's. */
  entrypoint?: string[];
  /** Docker's init (tini) as the container's PID 1, reaping orphans: for an entrypoint that is no init itself. */
  init?: boolean;
}

/** How a kernel container is locked down; every field maps to one HostConfig field. */
export interface ContainerSecurity {
  noNewPrivileges: boolean;
  /** Capabilities kept after dropping all; null = Docker's default set. */
  capabilities: string[] | null;
  seccomp: 'default' | 'unconfined';
  /** 0 = unlimited. */
  pidsLimit: number;
  /** 0 = Docker's default. */
  nofileLimit: number;
  /** Bytes of the container's log file before Docker rotates it, and the files kept: a kernel printing without end cannot fill the disk. */
  log: { maxBytes: number; maxFiles: number };
}

/** The HostConfig fields of a lock-down; privileged mode is never asked for. */
export function securityHostConfig(s: ContainerSecurity): Record<string, unknown> {
  const securityOpt: string[] = [];
  if (s.noNewPrivileges) securityOpt.push('no-new-privileges');
  if (s.seccomp === 'unconfined') securityOpt.push('seccomp=unconfined');
  return {
    Privileged: false,
    SecurityOpt: securityOpt,
    ...(s.capabilities ? { CapDrop: ['ALL'], CapAdd: s.capabilities } : {}),
    ...(s.pidsLimit > 0 ? { PidsLimit: s.pidsLimit } : {}),
    ...(s.nofileLimit > 0 ? { Ulimits: [{ Name: 'nofile', Soft: s.nofileLimit, Hard: s.nofileLimit }] } : {}),
    // json-file whatever the daemon's default driver: `docker logs` (get_logs) reads it, and its files lie under LogPath.
    LogConfig: { Type: 'json-file', Config: { 'max-size': String(s.log.maxBytes), 'max-file': String(s.log.maxFiles) } },
  };
}

/** What the agent needs to know of a container. */
export interface ContainerState {
  id: string;
  running: boolean;
  pid: number | null;
  /** Host ports by container port; missing while the container is not running. */
  ports: Partial<Record<number, number>>;
  labels: Record<string, string>;
  /** The kernel's OOM killer ended the container's main process (Docker's State.OOMKilled). */
  oomKilled: boolean;
  /** The main process's exit code once it has ended (Docker's State.ExitCode); null while running. */
  exitCode?: number | null;
  /** Paused (`docker pause`, the cgroup freezer); a paused container is also running. */
  paused?: boolean;
  /** Its memory limit in bytes (HostConfig.Memory; 0: none). */
  memoryBytes?: number;
  /** Its bind mounts: host folder and where the container sees it (Docker's Mounts). */
  binds?: Array<{ source: string; destination: string }>;
  /** Its environment, `KEY=VALUE` (Docker's Config.Env: the image's and the container's own). */
  env?: string[];
}

/** A container as listings show it. */
export interface ContainerSummary {
  id: string;
  running: boolean;
  /** Paused (`docker pause`); listings then say `paused`, not `running`. */
  paused?: boolean;
  labels: Record<string, string>;
  imageId: string;
  createdMs: number;
}

/** Turns a dockerode failure into our error, naming the step that failed. */
export function castDockerError(err: unknown, step: string): Error {
  const status = (err as { statusCode?: number }).statusCode;
  const msg = ((err as { json?: { message?: string } }).json?.message ?? errorMessage(err)).trim();
  if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ECONNREFUSED') {
    return new DockerError(`${step}: the Docker engine does not answer (${msg}); is dockerd running?`, { cause: err });
  }
  return new DockerError(`${step}: Docker said ${status ?? ''} ${msg}`.replace(/\s+/g, ' '), { cause: err });
}

/** The container ports a request publishes: 2000-2003, then its service ports. */
export function publishedPorts(req: Pick<ContainerRequest, 'servicePorts'>): number[] {
  return [...KERNEL_PORTS, ...(req.servicePorts ?? [])];
}

/** The host ports that containers of this engine publish now (any container, any owner). */
export async function publishedHostPorts(docker: Docker): Promise<Set<number>> {
  const list = await docker.listContainers({ all: true });
  return new Set(list.flatMap((c) => (c.Ports ?? []).map((p) => p.PublicPort).filter((p): p is number => typeof p === 'number' && p > 0)));
}

const isNotFound = (err: unknown) => (err as { statusCode?: number }).statusCode === 404;

export class DockerEngine {
  readonly docker: Docker;

  /** Connects through DOCKER_HOST if set, else the local socket. */
  constructor(options: Docker.DockerOptions = {}) {
    this.docker = new Docker(options);
  }

  /** Engine version, which also proves the engine answers. */
  async version(): Promise<string> {
    const v = await this.docker.version();
    return v.Version;
  }

  /** The runtimes registered with the engine (`docker info` Runtimes) and its API version. */
  async runtimes(): Promise<{ runtimes: string[]; apiVersion: string }> {
    const [info, version] = await Promise.all([
      this.docker.info() as Promise<{ Runtimes?: Record<string, unknown> }>,
      this.docker.version(),
    ]);
    return { runtimes: Object.keys(info.Runtimes ?? {}), apiVersion: version.ApiVersion };
  }

  /** The local images whose repository starts with the prefix, as `[name:tag without prefix, id]`. */
  async kernelImages(prefix: string): Promise<KernelImage[]> {
    const images = await this.docker.listImages();
    const out: KernelImage[] = [];
    for (const image of images) {
      for (const tag of image.RepoTags ?? []) {
        if (tag.startsWith(prefix) && !tag.endsWith(':<none>')) out.push([tag.slice(prefix.length), image.Id]);
      }
    }
    return out.sort((a, b) => a[0].localeCompare(b[0]));
  }

  /** The labels and id of a local image; ImageNotFoundError when it is not here. */
  async image(name: string): Promise<{ id: string; labels: Record<string, string> }> {
    try {
      const info = await this.docker.getImage(name).inspect();
      return { id: info.Id, labels: info.Config?.Labels ?? {} };
    } catch (err) {
      if (isNotFound(err)) throw new ImageNotFoundError(name);
      throw castDockerError(err, `inspecting image ${name}`);
    }
  }

  /**
   * Awaited before a container that joins a network is created: the owner of
   * that network makes it on first use (src/containers/kernel-network.ts).
   */
  networkReady: ((name: string) => Promise<void>) | null = null;

  /** Creates a container; returns its id. */
  async create(req: ContainerRequest): Promise<string> {
    if (req.network && this.networkReady) await this.networkReady(req.network);
    const published = publishedPorts(req);
    const exposed = Object.fromEntries(published.map((p) => [`${p}/tcp`, {}]));
    const bindings = Object.fromEntries(
      published.map((p) => [`${p}/tcp`, [{ HostIp: req.publishHost, HostPort: String(req.hostPorts?.[p] ?? '') }]]),
    );
    let id: string;
    try {
      const c = await this.docker.createContainer({
        name: req.name,
        Image: req.image,
        Labels: req.labels,
        Env: req.env,
        ...(req.entrypoint ? { Entrypoint: req.entrypoint, Cmd: [] } : {}),
        ExposedPorts: exposed,
        ...(req.hostname ? { Hostname: req.hostname } : {}),
        ...(req.network && req.networkAliases?.length
          ? { NetworkingConfig: { EndpointsConfig: { [req.network]: { Aliases: req.networkAliases } } } }
          : {}),
        HostConfig: {
          Binds: req.binds,
          Memory: req.memoryBytes,
          MemorySwap: req.memoryBytes, // equal to Memory: no swap
          CpusetCpus: req.cpusetCpus,
          ...(req.cpuShares ? { CpuShares: req.cpuShares } : {}),
          ...(req.cpusetMems ? { CpusetMems: req.cpusetMems } : {}),
          ...(req.devices?.length ? { Devices: req.devices } : {}),
          ...(req.deviceRequests?.length ? { DeviceRequests: req.deviceRequests } : {}),
          ...(req.runtime ? { Runtime: req.runtime } : {}),
          PortBindings: bindings,
          ...(req.network ? { NetworkMode: req.network } : {}),
          ...(req.shmBytes ? { ShmSize: req.shmBytes } : {}),
          Init: req.init === true,
          ...securityHostConfig(req.security),
        },
      });
      id = c.id;
    } catch (err) {
      throw castDockerError(err, `creating container ${req.name}`);
    }
    if (req.overlay) await this.connectOverlay(id, req.overlay);
    return id;
  }

  /** Connects a created container to a Swarm overlay network (one network at create before API 1.44); removes the container when that fails. */
  private async connectOverlay(id: string, overlay: { name: string; aliases: string[] }): Promise<void> {
    try {
      await this.docker.getNetwork(overlay.name).connect({ Container: id, EndpointConfig: { Aliases: overlay.aliases } });
    } catch (err) {
      await this.docker
        .getContainer(id)
        .remove({ force: true })
        .catch(() => undefined);
      throw castDockerError(err, `joining the overlay network ${overlay.name}`);
    }
  }

  /** Whether a path exists in a container's file system (created or running; Docker's archive HEAD, nothing copied). */
  async pathExists(id: string, file: string): Promise<boolean> {
    try {
      await this.docker.getContainer(id).infoArchive({ path: file });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw castDockerError(err, `looking for ${file} in container ${id.slice(0, 12)}`);
    }
  }

  async start(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).start();
    } catch (err) {
      throw castDockerError(err, `starting container ${id.slice(0, 12)}`);
    }
  }

  /** The state of a container, or null when it does not exist. */
  async inspect(id: string): Promise<ContainerState | null> {
    try {
      const info = await this.docker.getContainer(id).inspect();
      const ports: Partial<Record<number, number>> = {};
      for (const [key, binds] of Object.entries(info.NetworkSettings?.Ports ?? {})) {
        const hostPort = binds?.[0]?.HostPort;
        if (hostPort) ports[Number(key.split('/')[0])] = Number(hostPort);
      }
      return {
        id: info.Id,
        running: info.State.Running,
        pid: info.State.Pid || null,
        ports,
        labels: info.Config.Labels ?? {},
        oomKilled: info.State.OOMKilled === true,
        exitCode: info.State.Running ? null : info.State.ExitCode,
        paused: info.State.Paused === true,
        memoryBytes: info.HostConfig?.Memory ?? 0,
        binds: (info.Mounts ?? []).filter((m) => m.Type === 'bind').map((m) => ({ source: m.Source, destination: m.Destination })),
        env: info.Config.Env ?? [],
      };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw castDockerError(err, `inspecting container ${id.slice(0, 12)}`);
    }
  }

  /** Changes the cores, memory limit (swap equal: no swap) and CPU weight of a running container. */
  async update(id: string, limits: { cpusetCpus: string; memoryBytes: number; cpuShares: number }): Promise<void> {
    try {
      await this.docker.getContainer(id).update({
        CpusetCpus: limits.cpusetCpus,
        Memory: limits.memoryBytes,
        MemorySwap: limits.memoryBytes,
        CpuShares: limits.cpuShares,
      });
    } catch (err) {
      throw castDockerError(err, `updating the limits of container ${id.slice(0, 12)}`);
    }
  }

  /** Pauses (`freeze`) or unpauses a running container's processes (the cgroup freezer). */
  async setPaused(id: string, paused: boolean): Promise<void> {
    try {
      const c = this.docker.getContainer(id);
      await (paused ? c.pause() : c.unpause());
    } catch (err) {
      throw castDockerError(err, `${paused ? 'pausing' : 'unpausing'} container ${id.slice(0, 12)}`);
    }
  }

  /** Renames a container. */
  async rename(id: string, name: string): Promise<void> {
    try {
      await this.docker.getContainer(id).rename({ name });
    } catch (err) {
      throw castDockerError(err, `renaming container ${id.slice(0, 12)} to ${name}`);
    }
  }

  /** Containers (running or not) carrying a label, e.g. `io.compute-agent.agent=<id>`, with their image id and creation time (ms). */
  async listByLabel(label: string): Promise<ContainerSummary[]> {
    try {
      const list = await this.docker.listContainers({ all: true, filters: { label: [label] } });
      return list.map((c) => ({
        id: c.Id,
        running: c.State === 'running',
        paused: c.State === 'paused',
        labels: c.Labels ?? {},
        imageId: c.ImageID,
        createdMs: c.Created * 1000,
      }));
    } catch (err) {
      throw castDockerError(err, 'listing containers');
    }
  }

  /** Sends SIGKILL to a container; one already stopped or gone is fine. */
  async kill(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).kill({ signal: 'SIGKILL' });
    } catch (err) {
      const status = (err as { statusCode?: number }).statusCode;
      if (isNotFound(err) || status === 409) return; // gone, or not running
      throw castDockerError(err, `killing container ${id.slice(0, 12)}`);
    }
  }

  /** Kills and removes a container; a container already gone is fine. */
  async remove(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch (err) {
      if (isNotFound(err)) return;
      if ((err as { statusCode?: number }).statusCode === 409 && /already in progress/.test(errorMessage(err))) return;
      throw castDockerError(err, `removing container ${id.slice(0, 12)}`);
    }
  }

  /** The container's output (stdout and stderr interleaved), as text: at most its last `tailLines` lines and {@link LOG_TAIL_BYTES} bytes. */
  async logs(id: string, tailLines = 10_000): Promise<string> {
    return (await this.logTail(id, tailLines, LOG_TAIL_BYTES)).text;
  }

  /** The end of the container's output: its last `tailLines` lines, of which the last `maxBytes` bytes, and how much was cut. */
  async logTail(id: string, tailLines: number, maxBytes: number): Promise<LogTail> {
    try {
      return await readLogTail(this.docker, id, tailLines, maxBytes);
    } catch (err) {
      throw castDockerError(err, `reading logs of container ${id.slice(0, 12)}`);
    }
  }

  /**
   * Calls `onDie` for every `die` event of containers with the label, until
   * the signal aborts; reconnects with a backoff when the stream ends (e.g.
   * dockerd restarted), logging the outage once, replays events since the last
   * one seen, and calls `onReconnect` so the caller can check what it holds.
   */
  watchDeaths(
    label: string,
    onDie: (containerId: string) => void,
    log: Logger,
    signal: AbortSignal,
    onReconnect?: () => void,
  ): Promise<void> {
    const filters = { type: ['container'], event: ['die'], label: [label] };
    return followEvents(
      this.docker,
      filters,
      (ev) => {
        const id = ev.Actor?.ID ?? ev.id;
        if (id) onDie(id);
      },
      { log, signal, onReconnect, what: 'Docker events stream' },
    );
  }
}
