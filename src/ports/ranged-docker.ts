/**
 * RangedDocker is the Docker engine as kernels and the warm pool see it when
 * the agent manages host ports: every container it creates is published on
 * ports of the HostPortRange (src/ports/range.ts), taken before the create
 * and given back when the create fails or the container is removed, so that
 * every path that removes a container (destroy, restart, a failed create or
 * claim, pool hygiene, a dead kernel found at start) returns its ports.
 */
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { DockerEngine, publishedHostPorts, publishedPorts, type ContainerRequest } from '../adapters/docker.js';
import { LABELS } from '../adapters/labels.js';
import { ASSIGNED, HostPortRange, type PortRangeSettings } from './range.js';

/** Whether something on this host already listens on `host:port` (a bind on it fails with EADDRINUSE; any other failure is not a listener). */
export function listenerOn(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EADDRINUSE'));
    srv.listen({ host: host || '0.0.0.0', port, exclusive: true }, () => srv.close(() => resolve(false)));
  });
}

export class RangedDocker extends DockerEngine {
  readonly ports: HostPortRange;

  constructor(settings: () => PortRangeSettings, now?: () => number) {
    super();
    this.ports = new HostPortRange(settings, now);
  }

  /** Takes `n` ports for `owner`, skipping those another agent's container or another program holds. */
  private async takePorts(n: number, owner: string, publishHost: string): Promise<number[]> {
    const byDocker = await publishedHostPorts(this.docker).catch(() => new Set<number>()); // other agents' containers on this engine
    return this.ports.take(n, owner, async (p) => byDocker.has(p) || (await listenerOn(publishHost, p)));
  }

  /**
   * assign_port of a modern manager: one free port of the range, held until
   * release_port gives it back (kept only in memory, as the 24.09 agent's
   * port pool: an agent restart frees it again).
   */
  async assignPort(publishHost: string): Promise<number> {
    const [port] = await this.takePorts(1, ASSIGNED, publishHost);
    return port!;
  }

  /** release_port: gives back a port assign_port gave out; false when it was free already. */
  releasePort(port: number): boolean {
    return this.ports.releaseOne(ASSIGNED, port);
  }

  override async create(req: ContainerRequest): Promise<string> {
    const wanted = publishedPorts(req);
    const token = `creating:${randomUUID()}`;
    const host = await this.takePorts(wanted.length, token, req.publishHost);
    try {
      const id = await super.create({ ...req, hostPorts: Object.fromEntries(wanted.map((p, i) => [p, host[i]!])) });
      this.ports.transfer(token, id);
      return id;
    } catch (err) {
      this.ports.release(token);
      throw err;
    }
  }

  override async remove(id: string): Promise<void> {
    await super.remove(id); // a failure keeps the ports: the container may still hold them
    this.ports.release(id);
  }

  /**
   * Takes back the host ports of the running containers of the agent
   * (re-adoption after an agent restart); call before the kernels and the
   * pool adopt their containers. Returns how many ports were taken back.
   */
  async adoptAgentPorts(agentId: string): Promise<number> {
    let n = 0;
    for (const c of await this.listByLabel(`${LABELS.agent}=${agentId}`)) {
      const state = c.running ? await this.inspect(c.id) : null;
      const ports = Object.values(state?.ports ?? {}).filter((p): p is number => typeof p === 'number');
      this.ports.adopt(c.id, ports);
      n += ports.length;
    }
    return n;
  }
}
