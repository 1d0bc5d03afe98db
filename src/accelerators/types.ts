/**
 * The accelerator interface: what the kernel service, the heartbeat and the
 * node stats know of GPUs and other devices. One module per kind implements
 * {@link Accelerator} (src/accelerators/nvidia.ts for CUDA); nothing above
 * this room sees nvidia-smi, /proc or /dev.
 */

/** One device as detection found it. */
export interface AcceleratorDevice {
  /** The driver's index (nvidia-smi's `index`). */
  index: number;
  uuid: string;
  /** PCI bus id as sysfs spells it, e.g. `0000:3b:00.0`. */
  busId: string;
  /** NUMA node of the device; null: any node (sysfs says -1, or nothing). */
  numaNode: number | null;
  memoryTotalMiB: number;
  name: string;
  /** The N of its `/dev/nvidiaN` node (the driver's device minor). */
  minor: number;
}

/** Per-device figures, read with the device list. */
export interface DeviceFigures {
  index: number;
  memoryUsedMiB: number;
  memoryTotalMiB: number;
  /** Percent of the last sample period the device was busy; null when the driver does not say. */
  utilizationPct: number | null;
}

/**
 * How devices get into a container on this node: `runtime` (the NVIDIA
 * container runtime or toolkit: DeviceRequests), `device-nodes` (the /dev
 * nodes and the driver's libraries bind-mounted), or `none` (CPU fallback).
 */
export type PassPath = 'runtime' | 'device-nodes' | 'none';

/** What one detection found. */
export interface AcceleratorState {
  kind: string;
  path: PassPath;
  /** The usable devices (after `gpu_allow`), by index; empty when `path` is none. */
  devices: AcceleratorDevice[];
  /** Devices found but kept back by `gpu_allow`. */
  excluded: number;
  figures: DeviceFigures[];
  /** Why this path: what was found, or for `none` what is missing. */
  reason: string;
  /** Whether the vendor's driver is on this node: `none` without it is a CPU node, with it a broken GPU node. */
  driverFound: boolean;
  /** What an operator does to get a better path ('' when there is nothing to do). */
  fix: string;
  /** Unix ms of the detection. */
  at: number;
}

/** A device node given to a container, as Docker's HostConfig.Devices spells it. */
export interface DeviceMapping {
  PathOnHost: string;
  PathInContainer: string;
  CgroupPermissions: string;
}

/** A device request, as Docker's HostConfig.DeviceRequests spells it. */
export interface DeviceRequest {
  Driver: string;
  DeviceIDs: string[];
  Capabilities: string[][];
}

/** What a container needs to use a set of devices; merged into the kernel's container request. */
export interface DeviceHostConfig {
  env: string[];
  /** `host:container:ro` binds. */
  binds: string[];
  devices: DeviceMapping[];
  deviceRequests: DeviceRequest[];
  /** A Docker runtime to run the container with; null: the default. */
  runtime: string | null;
}

/** One kind of accelerator on this node. */
export interface Accelerator {
  /** `cuda`, as the image label `ai.backend.accelerators` names it. */
  readonly kind: string;
  /** Lists the devices and decides the path; never throws (a failure is a `none` state saying why). */
  detect(): Promise<AcceleratorState>;
  /** The Docker arguments of a set of devices (of the last detection) for a path. */
  hostConfig(devices: readonly AcceleratorDevice[], path: PassPath): DeviceHostConfig;
  /**
   * The device memory each process uses now, by host pid; rejects when the
   * driver cannot say (then kernels report no GPU memory figure).
   */
  processMemory?(): Promise<Array<{ pid: number; usedMiB: number }>>;
}
