/**
 * Heartbeat sends `instance_heartbeat` with the agent's info at a fixed
 * interval (PROTOCOL.md section 2). The info carries the node's slots and the
 * kernel images on this node, msgpacked and snappy-compressed as the 2018
 * manager reads them. Beats are chained (the next is planned when one is
 * done), so a slow Docker never piles them up.
 */
import { compressSync } from 'snappy';
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import type { KernelImage } from '../adapters/docker.js';
import type { NodeResources } from '../node/resources.js';
import type { Codec } from '../wire/codec.js';

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
  /** The agent's CURVE public key (Z85) when RPC authentication is on; a 2018 manager ignores it. */
  public_key?: string;
}

/** What the heartbeat needs from the rest of the agent. */
export interface HeartbeatDeps {
  log: Logger;
  codec: Codec;
  emit(name: string, args: unknown[]): boolean;
  identity(): { ip: string; region: string; addr: string; public_key?: string };
  resources(): NodeResources;
  /** Lists kernel images; may fail (Docker down), then the last known list is sent. */
  listImages(): Promise<KernelImage[]>;
}

export class Heartbeat {
  private timer: NodeJS.Timeout | null = null;
  private images: KernelImage[] = [];
  private imagesFailing = false;
  private running = false;
  private inBeat = false;

  constructor(
    private readonly deps: HeartbeatDeps,
    private intervalMs: number,
  ) {}

  /** Starts beating; the first beat goes out at once. */
  start(): void {
    if (this.running) return;
    this.running = true;
    void this.beat();
  }

  /** Changes the interval; applies from the next beat. */
  setInterval(ms: number): void {
    if (ms === this.intervalMs) return;
    this.intervalMs = ms;
    if (this.running && this.timer && !this.inBeat) {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.beat(), ms);
    }
  }

  /** Beats now and restarts the interval from here, e.g. when a new sink appears. */
  kick(): void {
    if (!this.running || this.inBeat) return;
    if (this.timer) clearTimeout(this.timer);
    void this.beat();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Builds agent_info as the heartbeat sends it. */
  async agentInfo(): Promise<AgentInfo> {
    await this.refreshImages();
    const r = this.deps.resources();
    return {
      ...this.deps.identity(),
      mem_slots: r.memSlotsMiB,
      cpu_slots: r.cpuSlots,
      gpu_slots: r.gpuSlots,
      images: compressSync(this.deps.codec.encode(this.images)),
    };
  }

  private async beat(): Promise<void> {
    this.timer = null;
    this.inBeat = true;
    try {
      this.deps.emit('instance_heartbeat', [await this.agentInfo()]);
    } catch (err) {
      this.deps.log.error('heartbeat failed', { error: errorMessage(err) });
    } finally {
      this.inBeat = false;
    }
    if (this.running && !this.timer) this.timer = setTimeout(() => void this.beat(), this.intervalMs);
  }

  private async refreshImages(): Promise<void> {
    try {
      this.images = await this.deps.listImages();
      if (this.imagesFailing) this.deps.log.info('Docker answers again; image list refreshed', { images: this.images.length });
      this.imagesFailing = false;
    } catch (err) {
      if (!this.imagesFailing) {
        this.deps.log.warn('cannot list kernel images; heartbeats carry the last known list', {
          error: errorMessage(err),
          hint: 'check that dockerd runs and that the agent may use /var/run/docker.sock',
        });
      }
      this.imagesFailing = true;
    }
  }
}
