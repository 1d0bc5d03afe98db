/**
 * Heartbeat sends `instance_heartbeat` with the agent's info at a fixed
 * interval (docs/wire-contract.rst, "Events"). The info carries the node's slots and the
 * kernel images on this node, msgpacked and snappy-compressed as the 2018
 * manager reads them, plus (beyond the 2018 set, ignored by its manager)
 * the node's CPU, memory and disk figures and each kernel's cgroup figures.
 * Every beat is also written to etcd as `nodes/agents/<id>/heartbeat`; a
 * failed write is logged once per outage and never delays a beat. Beats are
 * chained (the next is planned when one is done), so a slow Docker never
 * piles them up.
 */
import { compressSync } from 'snappy';
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import type { KernelImage } from '../adapters/docker.js';
import type { NodeResources } from '../node/resources.js';
import type { NodeFigures } from '../node/stats.js';
import type { KernelStats } from '../rpc/results.js';
import type { Codec } from '../wire/codec.js';
import type { AgentEventName } from '../events/catalogue.js';
import type { AgentInfo } from '../events/agent-info.js';
import { PassCounter } from '../util/pass-counter.js';

/** HeartbeatRecord is what each beat writes to etcd as `nodes/agents/<id>/heartbeat` (JSON), for tools such as `agentctl agents`. */
export interface HeartbeatRecord {
  /** Unix seconds. */
  time: number;
  addr: string;
  cpu_slots: number;
  mem_slots: number;
  node: NodeFigures | null;
  /** How many kernels run. */
  kernels: number;
  /** Whether the agent's firewall keeps kernels apart (`kernel_isolation`). */
  kernel_isolation?: 'on' | 'off';
  /** Present (true) while the node drains (src/services/drain.ts). */
  draining?: boolean;
}

/** What the heartbeat needs from the rest of the agent. */
export interface HeartbeatDeps {
  log: Logger;
  codec: Codec;
  emit(name: AgentEventName, args: unknown[]): boolean;
  identity(): { ip: string; region: string; addr: string; public_key?: string; kernel_isolation?: 'on' | 'off'; draining?: boolean };
  resources(): NodeResources;
  /** Lists kernel images; may fail (Docker down), then the last known list is sent. */
  listImages(): Promise<KernelImage[]>;
  /** The node's figures and every running kernel's cgroup figures. */
  sample(): Promise<{ node: NodeFigures; kernels: Record<string, KernelStats> }>;
  /** Stores a beat's summary in etcd; a failure is logged once per outage. */
  record(beat: HeartbeatRecord): Promise<void>;
}

export class Heartbeat {
  private timer: NodeJS.Timeout | null = null;
  private images: KernelImage[] = [];
  private imagesFailing = false;
  private running = false;
  private inBeat = false;
  private sampleFailing = false;
  private recordFailing = false;
  /** The etcd write in flight; at most one at a time, awaited by stop(). */
  private recording: Promise<void> | null = null;
  /** Beats sent (an `instance_heartbeat` emitted): what {@link afterBeats} waits on. */
  private readonly beats = new PassCounter();

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

  /** Resolves once `n` more heartbeats than now have been emitted (at {@link stop} too): a wait on the beat, not on time. */
  afterBeats(n: number): Promise<void> {
    return this.beats.after(n);
  }

  /** Stops beating; resolves once a beat's etcd write in flight is done, so a deregistration after it is final. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.beats.close();
    await this.recording;
  }

  /** Builds agent_info as the heartbeat sends it. */
  async agentInfo(): Promise<AgentInfo> {
    await this.refreshImages();
    const r = this.deps.resources();
    const sample = await this.deps.sample().then(
      (v) => {
        if (this.sampleFailing) this.deps.log.info('node figures readable again');
        this.sampleFailing = false;
        return v;
      },
      (err: unknown) => {
        if (!this.sampleFailing)
          this.deps.log.warn('cannot read the node figures; heartbeats go out without them', { error: errorMessage(err) });
        this.sampleFailing = true;
        return null;
      },
    );
    return {
      ...this.deps.identity(),
      mem_slots: r.memSlotsMiB,
      cpu_slots: r.cpuSlots,
      gpu_slots: r.gpuSlots,
      images: compressSync(this.deps.codec.encode(this.images)),
      ...(sample ? { node: sample.node, kernel_stats: sample.kernels } : {}),
    };
  }

  private async beat(): Promise<void> {
    this.timer = null;
    this.inBeat = true;
    try {
      const info = await this.agentInfo();
      if (!this.running) return; // stopped meanwhile: no beat after instance_terminated, no write after deregistering
      this.deps.emit('instance_heartbeat', [info]);
      this.beats.passed();
      this.store(info);
    } catch (err) {
      this.deps.log.error('heartbeat failed', { error: errorMessage(err) });
    } finally {
      this.inBeat = false;
    }
    if (this.running && !this.timer) this.timer = setTimeout(() => void this.beat(), this.intervalMs);
  }

  /** Starts the etcd write of a beat unless one is still in flight (a hung etcd must not pile them up). */
  private store(info: AgentInfo): void {
    if (this.recording) return;
    const beat: HeartbeatRecord = {
      time: Math.floor(Date.now() / 1000),
      addr: info.addr,
      cpu_slots: info.cpu_slots,
      mem_slots: info.mem_slots,
      node: info.node ?? null,
      kernels: Object.keys(info.kernel_stats ?? {}).length,
      ...(info.kernel_isolation ? { kernel_isolation: info.kernel_isolation } : {}),
      ...(info.draining ? { draining: true } : {}),
    };
    this.recording = this.deps
      .record(beat)
      .then(
        () => {
          if (this.recordFailing) this.deps.log.info('etcd takes heartbeats again');
          this.recordFailing = false;
        },
        (err: unknown) => {
          if (!this.recordFailing) {
            this.deps.log.warn('cannot write the heartbeat to etcd; beats go on and the next writes retry', {
              error: errorMessage(err),
              hint: 'check that etcd answers at --etcd-addr',
            });
          }
          this.recordFailing = true;
        },
      )
      .finally(() => (this.recording = null));
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
