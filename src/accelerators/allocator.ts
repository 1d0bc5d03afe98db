/**
 * DeviceAllocator hands out whole devices to kernels (a device is never
 * shared: that needs a CUDA hook and is out of scope), preferring devices
 * that share one NUMA node; the pure helpers here pick the devices and then
 * the cores and memory nodes that match them.
 */
import type { AcceleratorDevice } from './types.js';

/** DevicesExhausted is thrown when the node has no room for a kernel's devices; nothing was taken. */
export class DevicesExhausted extends Error {}

/** A device as placement sees it. */
export type Placeable = Pick<AcceleratorDevice, 'index' | 'numaNode'>;

/**
 * Picks `count` of the free devices: all on one NUMA node when any node has
 * that many (devices of node "any" count for every node), the node with the
 * fewest free devices that still fits first (so bigger blocks stay whole),
 * `preferNode` winning a tie; else the lowest indexes. Null when fewer are free.
 */
export function pickDevices(free: readonly Placeable[], count: number, preferNode: number | null = null): number[] | null {
  if (count < 1 || free.length < count) return null;
  const byIndex = [...free].sort((a, b) => a.index - b.index);
  const nodes = [...new Set(free.map((d) => d.numaNode).filter((n): n is number => n !== null))];
  const onNode = (n: number) => byIndex.filter((d) => d.numaNode === n || d.numaNode === null);
  const fitting = nodes
    .map((n) => ({ n, devs: onNode(n) }))
    .filter((x) => x.devs.length >= count)
    // Own-node devices first within a node, so "any" devices stay for others.
    .map((x) => ({ ...x, devs: [...x.devs.filter((d) => d.numaNode === x.n), ...x.devs.filter((d) => d.numaNode === null)] }))
    .sort((a, b) => a.devs.length - b.devs.length || Number(b.n === preferNode) - Number(a.n === preferNode) || a.n - b.n);
  const chosen = fitting[0]?.devs ?? byIndex;
  return chosen
    .slice(0, count)
    .map((d) => d.index)
    .sort((a, b) => a - b);
}

/** The NUMA node all of these devices are on (devices of node "any" agree with every node); null when none or several. */
export function commonNode(devices: readonly Placeable[]): number | null {
  const nodes = new Set(devices.map((d) => d.numaNode).filter((n): n is number => n !== null));
  return nodes.size === 1 ? [...nodes][0]! : null;
}

/**
 * Where a kernel's cores should come from for its devices: the cores of
 * their common NUMA node (null: no preference), and the `CpusetMems` to give
 * once the cores are chosen: that node when every core lies on it, else ''.
 */
export function numaPlacement(
  devices: readonly Placeable[],
  nodeCpus: ReadonlyMap<number, readonly number[]>,
): { preferCores: number[] | null; node: number | null } {
  const node = commonNode(devices);
  const cpus = node === null ? undefined : nodeCpus.get(node);
  return { preferCores: cpus ? [...cpus] : null, node: cpus ? node : null };
}

/** The CpusetMems of a kernel: its node when all its cores are on it, else '' (Docker's default, every node). */
export function cpusetMems(node: number | null, cores: readonly number[], nodeCpus: ReadonlyMap<number, readonly number[]>): string {
  if (node === null) return '';
  const cpus = new Set(nodeCpus.get(node) ?? []);
  return cores.length > 0 && cores.every((c) => cpus.has(c)) ? String(node) : '';
}

export class DeviceAllocator {
  /** Held devices: index -> holder (a kernel id, or a pool slot). */
  private readonly held = new Map<number, string>();

  constructor(private devices: readonly Placeable[]) {}

  /** Replaces the device list after a detection; held devices stay held (a kernel keeps what it has). */
  setDevices(devices: readonly Placeable[]): void {
    this.devices = devices;
  }

  /** Takes `count` devices for `holder`; throws DevicesExhausted (taking nothing) when there is no room. */
  allocate(count: number, holder: string, preferNode: number | null = null): number[] {
    const free = this.devices.filter((d) => !this.held.has(d.index));
    const set = pickDevices(free, count, preferNode);
    if (!set) throw new DevicesExhausted(`${count} GPU(s) requested, ${free.length} of ${this.devices.length} free`);
    for (const i of set) this.held.set(i, holder);
    return set;
  }

  /**
   * Takes exactly these devices (a restart's `gpu_set`, or a re-adopted
   * kernel's). With `force`, devices held or no longer listed are taken
   * anyway: a running kernel holds them whether or not the books agree.
   */
  claim(set: readonly number[], holder: string, force = false): void {
    if (!force) {
      for (const i of set) {
        if (!this.devices.some((d) => d.index === i))
          throw new DevicesExhausted(
            `GPU ${i} is not usable on this node (usable: ${this.devices.map((d) => d.index).join(',') || 'none'})`,
          );
        const by = this.held.get(i);
        if (by !== undefined && by !== holder) throw new DevicesExhausted(`GPU ${i} is held by ${by}`);
      }
    }
    for (const i of set) this.held.set(i, holder);
  }

  /** Gives devices back. */
  release(set: readonly number[]): void {
    for (const i of set) this.held.delete(i);
  }

  /** Who holds each held device. */
  holders(): ReadonlyMap<number, string> {
    return this.held;
  }

  /** How many listed devices are free. */
  get free(): number {
    return this.devices.filter((d) => !this.held.has(d.index)).length;
  }
}
