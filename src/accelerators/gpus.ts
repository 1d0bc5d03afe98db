/**
 * GpuService is what the rest of the agent sees of GPUs: it runs detection
 * at start and on a slow interval (logging the chosen path once, and again
 * only when it changes), keeps the device books (whole devices, NUMA
 * preferring), answers what a kernel may have (refusing with a clear error,
 * nothing taken), builds the Docker arguments of a kernel's devices, and
 * reports each device for heartbeats, node stats and metrics.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { NoResourcesError, ParametersError } from '../errors.js';
import type { Logger } from '../log.js';
import { cpusetMems, DeviceAllocator, DevicesExhausted, numaPlacement } from './allocator.js';
import type { Accelerator, AcceleratorDevice, AcceleratorState, DeviceHostConfig } from './types.js';

/** How often detection runs again after start. */
export const GPU_DETECT_INTERVAL_MS = 60_000;
/** How often the device memory of kernels' processes is sampled while kernels hold GPUs. */
export const GPU_MEMORY_INTERVAL_MS = 10_000;

/** The container id in a /proc/<pid>/cgroup file (cgroup v1 `/docker/<id>`, v2 `docker-<id>.scope`), or null. */
export function containerOfCgroup(text: string): string | null {
  return /[/-]([0-9a-f]{64})(?:\.scope)?$/m.exec(text)?.[1] ?? null;
}

/** What a GPU grant tells the core allocator: the devices, and the cores to prefer for them. */
export interface GpuGrant {
  gpuSet: number[];
  preferCores: number[] | null;
}

/** One device as node stats and metrics show it. */
export interface GpuReport {
  index: number;
  uuid: string;
  name: string;
  numa_node: number | null;
  mem_total_bytes: number;
  mem_used_bytes: number;
  util_pct: number | null;
  /** Who holds it: a kernel id, `pool:<slot>`, or null when free. */
  kernel_id: string | null;
}

/** Parses a cpulist such as `0-23,48-71`. */
export function parseCpuList(text: string): number[] {
  const out: number[] = [];
  for (const part of text.trim().split(',').filter(Boolean)) {
    const [a, b] = part.split('-').map(Number);
    if (!Number.isInteger(a)) continue;
    for (let c = a!; c <= (Number.isInteger(b) ? b! : a!); c++) out.push(c);
  }
  return out;
}

/** The cores of each NUMA node from `<sys>/devices/system/node/node*\/cpulist`; empty when sysfs has none. */
export async function readNodeCpus(sysRoot = '/sys'): Promise<Map<number, number[]>> {
  const dir = path.join(sysRoot, 'devices/system/node');
  const out = new Map<number, number[]>();
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    const m = /^node(\d+)$/.exec(name);
    if (!m) continue;
    const list = await fs.readFile(path.join(dir, name, 'cpulist'), 'utf8').catch(() => '');
    out.set(Number(m[1]), parseCpuList(list));
  }
  return out;
}

/** What a kernel's image says about GPUs. */
export interface GpuTraits {
  /** The image opted in (`io.sorna.nvidia.enabled=yes` or `ai.backend.accelerators` naming cuda). */
  cuda: boolean;
}

export class GpuService {
  readonly books = new DeviceAllocator([]);
  private current: AcceleratorState;
  private timer: NodeJS.Timeout | null = null;
  private memoryTimer: NodeJS.Timeout | null = null;
  private detecting: Promise<AcceleratorState> | null = null;
  private logged = '';
  /** The most device memory (bytes, summed over its processes) seen per container. */
  private readonly memoryMax = new Map<string, number>();
  private memoryFailing = false;
  /** Where the host's /proc is, to find the container of a GPU process. */
  procRoot = '/proc';

  constructor(
    private readonly accelerator: Accelerator,
    private readonly log: Logger,
    readonly nodeCpus: ReadonlyMap<number, readonly number[]> = new Map(),
    private readonly intervalMs = GPU_DETECT_INTERVAL_MS,
  ) {
    this.current = {
      kind: accelerator.kind,
      path: 'none',
      devices: [],
      excluded: 0,
      figures: [],
      reason: 'not detected yet',
      fix: '',
      at: 0,
      driverFound: false,
    };
  }

  /** The last detection. */
  get state(): AcceleratorState {
    return this.current;
  }

  /** The heartbeat's `gpu_slots`: usable devices (0 on the CPU fallback). */
  get slots(): number {
    return this.current.path === 'none' ? 0 : this.current.devices.length;
  }

  /** Detects once now, then again every interval. */
  async start(): Promise<void> {
    await this.refresh();
    const loop = () => {
      this.timer = setTimeout(() => void this.refresh().finally(() => this.timer !== null && loop()), this.intervalMs);
      this.timer.unref();
    };
    loop();
    const memoryLoop = () => {
      this.memoryTimer = setTimeout(() => {
        const held = [...this.books.holders().values()].some((h) => !h.startsWith('pool:'));
        void (held ? this.sampleMemory() : Promise.resolve()).finally(() => this.memoryTimer !== null && memoryLoop());
      }, GPU_MEMORY_INTERVAL_MS);
      this.memoryTimer.unref();
    };
    memoryLoop();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.memoryTimer) clearTimeout(this.memoryTimer);
    this.timer = null;
    this.memoryTimer = null;
  }

  /**
   * Samples the device memory of every GPU process and adds it to the
   * maximum of its container (found from /proc/<pid>/cgroup); a driver that
   * cannot say is logged once and leaves the maxima as they are.
   */
  async sampleMemory(): Promise<void> {
    if (!this.accelerator.processMemory || this.current.path === 'none') return;
    try {
      const procs = await this.accelerator.processMemory();
      const sums = new Map<string, number>();
      for (const p of procs) {
        const cid = containerOfCgroup(await fs.readFile(path.join(this.procRoot, String(p.pid), 'cgroup'), 'utf8').catch(() => ''));
        if (cid) sums.set(cid, (sums.get(cid) ?? 0) + p.usedMiB * 1024 * 1024);
      }
      for (const [cid, bytes] of sums) this.memoryMax.set(cid, Math.max(bytes, this.memoryMax.get(cid) ?? 0));
      if (this.memoryFailing) this.log.info('GPU process memory readable again');
      this.memoryFailing = false;
    } catch (err) {
      if (!this.memoryFailing)
        this.log.warn('cannot read the GPU memory of processes; kernels report no gpu_mem_max_bytes meanwhile', {
          error: (err as Error).message,
        });
      this.memoryFailing = true;
    }
  }

  /** The most device memory a container's processes held at the samples (0 when none was seen), and forgets it. */
  takeMemoryMax(containerId: string): number {
    const v = this.memoryMax.get(containerId) ?? 0;
    this.memoryMax.delete(containerId);
    return v;
  }

  /** Runs a detection (one at a time); logs the path when it differs from the last one logged. */
  refresh(): Promise<AcceleratorState> {
    this.detecting ??= this.accelerator
      .detect()
      .then((s) => {
        this.current = s;
        this.books.setDevices(s.path === 'none' ? [] : s.devices);
        const summary = `${s.path}|${s.devices.length}|${s.reason}`;
        if (summary !== this.logged) {
          this.logged = summary;
          if (s.path === 'none')
            this.log.warn('no usable GPU: kernels asking for gpu_slot > 0 are refused, gpu_slots is 0', { reason: s.reason, fix: s.fix });
          else
            this.log.info('GPUs detected', {
              path: s.path,
              devices: s.devices.map((d) => `${d.index}:${d.name}:numa${d.numaNode ?? '-any'}`),
              reason: s.reason,
            });
        }
        return s;
      })
      .finally(() => (this.detecting = null));
    return this.detecting;
  }

  /**
   * Takes the devices a kernel asks for (`gpuCount`, or exactly `gpuSet` on a
   * restart) for `holder`; null when it asks for none. Throws (taking
   * nothing) NoResourcesError when the node has no usable GPU or too few
   * free, and ParametersError when the image does not opt in.
   */
  take(spec: { gpuCount: number; gpuSet: number[] | null; image: string }, holder: string, traits: GpuTraits): GpuGrant | null {
    const count = spec.gpuSet?.length || Math.ceil(spec.gpuCount);
    if (count === 0) return null;
    const s = this.current;
    if (s.path === 'none') throw new NoResourcesError(`this node has no usable GPU (${s.reason}); fix: ${s.fix || 'none'}`);
    if (!traits.cuda) {
      throw new ParametersError(
        `image ${spec.image} does not opt in to GPUs: it needs the label io.sorna.nvidia.enabled=yes or ai.backend.accelerators=cuda (or ask for gpu_slot 0)`,
      );
    }
    try {
      let gpuSet: number[];
      if (spec.gpuSet?.length) {
        this.books.claim(spec.gpuSet, holder);
        gpuSet = spec.gpuSet;
      } else gpuSet = this.books.allocate(count, holder);
      return { gpuSet, preferCores: numaPlacement(this.devicesOf(gpuSet), this.nodeCpus).preferCores };
    } catch (err) {
      if (err instanceof DevicesExhausted) throw new NoResourcesError(`not enough GPUs for this kernel: ${err.message}`);
      throw err;
    }
  }

  /** Gives devices back. */
  release(set: readonly number[] | null | undefined): void {
    if (set?.length) this.books.release(set);
  }

  /** Takes back the devices of a re-adopted kernel, whatever the books say. */
  adopt(set: readonly number[], holder: string): void {
    if (set.length) this.books.claim(set, holder, true);
  }

  /** The Docker arguments and CpusetMems of a kernel's devices on this node's path. */
  hostConfig(gpuSet: readonly number[] | null | undefined, cores: readonly number[]): DeviceHostConfig & { cpusetMems: string } {
    const devices = this.devicesOf(gpuSet ?? []);
    const cfg = this.accelerator.hostConfig(devices, this.current.path);
    const { node } = numaPlacement(devices, this.nodeCpus);
    return { ...cfg, cpusetMems: devices.length ? cpusetMems(node, cores, this.nodeCpus) : '' };
  }

  /** Each usable device with its last figures and holder. */
  report(): GpuReport[] {
    const holders = this.books.holders();
    return this.current.devices.map((d) => {
      const f = this.current.figures.find((x) => x.index === d.index);
      return {
        index: d.index,
        uuid: d.uuid,
        name: d.name,
        numa_node: d.numaNode,
        mem_total_bytes: (f?.memoryTotalMiB ?? d.memoryTotalMiB) * 1024 * 1024,
        mem_used_bytes: (f?.memoryUsedMiB ?? 0) * 1024 * 1024,
        util_pct: f?.utilizationPct ?? null,
        kernel_id: holders.get(d.index) ?? null,
      };
    });
  }

  private devicesOf(set: readonly number[]): AcceleratorDevice[] {
    return set.map(
      (i) =>
        this.current.devices.find((d) => d.index === i) ?? {
          index: i,
          uuid: '',
          busId: '',
          numaNode: null,
          memoryTotalMiB: 0,
          name: '',
          minor: i,
        },
    );
  }
}
