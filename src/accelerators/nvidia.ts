/**
 * NvidiaCuda detects NVIDIA GPUs without a vendor SDK binding: `nvidia-smi
 * --query-gpu` (run off the event loop with a timeout), the driver's
 * `/proc/driver/nvidia/gpus/<bus>/information` (device minor), sysfs for the
 * NUMA node (`-1`: any node) and the `/dev/nvidia*` nodes. It picks how
 * devices get into containers on this node (the NVIDIA runtime/toolkit with
 * DeviceRequests; else the device nodes with the driver's libraries
 * bind-mounted, as the first nvidia-docker did; else none) and builds the
 * Docker arguments for a set of devices. Every path and binary is an option,
 * so tests drive it with a fixture tree.
 */
import { constants as fsc, existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../errors.js';
import { runProbe } from './exec.js';
import type { Accelerator, AcceleratorDevice, AcceleratorState, DeviceFigures, DeviceHostConfig, PassPath } from './types.js';

/** What nvidia-smi is asked for, in this order. */
export const SMI_FIELDS = ['index', 'uuid', 'pci.bus_id', 'name', 'memory.total', 'memory.used', 'utilization.gpu'] as const;

/** The driver's user-space libraries a CUDA program needs (sonames without the version), as nvidia-docker 1 listed them. */
export const DRIVER_LIBRARIES = [
  'libcuda.so',
  'libnvidia-ml.so',
  'libnvidia-ptxjitcompiler.so',
  'libnvidia-fatbinaryloader.so',
  'libnvidia-compiler.so',
  'libnvidia-nvvm.so',
  'libnvidia-opencl.so',
  'libnvidia-cfg.so',
  'libnvidia-gpucomp.so',
  'libnvidia-allocator.so',
];
/** The driver's binaries given to containers on the device-node path. */
export const DRIVER_BINARIES = [
  'nvidia-smi',
  'nvidia-debugdump',
  'nvidia-persistenced',
  'nvidia-cuda-mps-control',
  'nvidia-cuda-mps-server',
];
/** Control nodes a CUDA program opens besides its devices' `/dev/nvidiaN`, when the host has them. */
export const CONTROL_NODES = ['nvidiactl', 'nvidia-uvm', 'nvidia-uvm-tools', 'nvidia-modeset'];
/** Where the driver's files appear inside a container on the device-node path. */
export const CONTAINER_DRIVER_DIR = '/usr/local/nvidia';

/** Options of {@link NvidiaCuda}; every default is the real host's. */
export interface NvidiaOptions {
  /** nvidia-smi: a path, or a name looked up on PATH. */
  smi?: string;
  procRoot?: string;
  sysRoot?: string;
  devRoot?: string;
  /** How long nvidia-smi may take. */
  timeoutMs?: number;
  /** `gpu_allow`: indexes or UUIDs the agent may hand out; empty: all. */
  allow?: () => readonly string[];
  /** Docker's registered runtimes and API version; rejects when Docker does not answer. */
  docker?: () => Promise<{ runtimes: string[]; apiVersion: string }>;
  /** The output of `ldconfig -p`. */
  ldconfig?: () => Promise<string>;
  /** Directories searched for the driver's binaries and the container toolkit; default PATH. */
  binDirs?: readonly string[];
}

/** One row of nvidia-smi's CSV, before the sysfs and /proc reads. */
export interface SmiRow {
  index: number;
  uuid: string;
  busId: string;
  name: string;
  memoryTotalMiB: number;
  memoryUsedMiB: number;
  utilizationPct: number | null;
}

/** `00000000:3B:00.0` (nvidia-smi) -> `0000:3b:00.0` (sysfs, /proc). */
export function sysfsBusId(id: string): string {
  const m = /^(?:[0-9a-fA-F]*?([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$/.exec(id.trim());
  if (!m) throw new Error(`${JSON.stringify(id)} is not a PCI bus id`);
  return `${(m[1] ?? '0').padStart(4, '0')}:${m[2]}:${m[3]}.${m[4]}`.toLowerCase();
}

const figure = (v: string | undefined): number | null => {
  const n = Number((v ?? '').trim());
  return (v ?? '').trim() !== '' && Number.isFinite(n) ? n : null; // "[N/A]", "[Not Supported]"
};

/** Parses `nvidia-smi --query-gpu=<SMI_FIELDS> --format=csv,noheader,nounits`; throws on a line it cannot read. */
export function parseSmiCsv(text: string): SmiRow[] {
  const rows: SmiRow[] = [];
  for (const line of text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)) {
    const f = line.split(',').map((s) => s.trim());
    const index = figure(f[0]);
    if (f.length < SMI_FIELDS.length || index === null || !Number.isInteger(index) || !/^(GPU|MIG)-[0-9a-fA-F-]+$/.test(f[1]!)) {
      throw new Error(`nvidia-smi printed a line this agent cannot read: ${JSON.stringify(line.slice(0, 120))}`);
    }
    rows.push({
      index,
      uuid: f[1]!,
      busId: sysfsBusId(f[2]!),
      name: f.slice(3, f.length - 3).join(', '), // a name may hold commas
      memoryTotalMiB: figure(f[f.length - 3]) ?? 0,
      memoryUsedMiB: figure(f[f.length - 2]) ?? 0,
      utilizationPct: figure(f[f.length - 1]),
    });
  }
  return rows;
}

/**
 * Parses `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits`;
 * a process whose memory the driver does not give ("[N/A]", as under MIG or without permission) is left out.
 */
export function parseComputeApps(text: string): Array<{ pid: number; usedMiB: number }> {
  const out: Array<{ pid: number; usedMiB: number }> = [];
  for (const line of text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)) {
    const [pid, used] = line.split(',').map((s) => figure(s));
    if (pid === null || pid === undefined || !Number.isInteger(pid) || pid <= 0)
      throw new Error(`nvidia-smi printed a process line this agent cannot read: ${JSON.stringify(line.slice(0, 120))}`);
    if (used !== null && used !== undefined) out.push({ pid, usedMiB: used });
  }
  return out;
}

/** The `Key: value` lines of a /proc/driver/nvidia/gpus/<bus>/information file. */
export function parseInformation(text: string): Record<string, string> {
  return Object.fromEntries([...text.matchAll(/^([^:\n]+):\s*(.*)$/gm)].map((m) => [m[1]!.trim(), m[2]!.trim()]));
}

/** Whether a device is allowed by `gpu_allow` (indexes or UUIDs; empty allows all). */
export function allowed(dev: { index: number; uuid: string }, allow: readonly string[]): boolean {
  return allow.length === 0 || allow.some((a) => a === String(dev.index) || a.toLowerCase() === dev.uuid.toLowerCase());
}

/** The paths `ldconfig -p` lists for the driver's libraries, for this machine's word size (64-bit entries). */
export function driverLibraries(ldconfig: string): string[] {
  const out = new Map<string, string>();
  for (const m of ldconfig.matchAll(/^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)\s*$/gm)) {
    const [, soname, flags, file] = m as unknown as [string, string, string, string];
    if (!/x86-64|64bit|AArch64/i.test(flags)) continue;
    if (!DRIVER_LIBRARIES.some((lib) => soname === lib || soname.startsWith(`${lib}.`))) continue;
    if (!out.has(soname)) out.set(soname, file);
  }
  return [...out.values()];
}

/** Whether a Docker API version `major.minor` is at least the one given. */
export function apiAtLeast(version: string, major: number, minor: number): boolean {
  const [a, b] = version.split('.').map(Number);
  return a! > major || (a === major && (b ?? 0) >= minor);
}

async function executable(file: string): Promise<boolean> {
  return fs.access(file, fsc.X_OK).then(
    () => true,
    () => false,
  );
}

export class NvidiaCuda implements Accelerator {
  readonly kind = 'cuda';
  private readonly options: Required<Omit<NvidiaOptions, 'docker' | 'ldconfig'>> & Pick<NvidiaOptions, 'docker' | 'ldconfig'>;
  /** The driver files found by the last detection (device-node path). */
  private libraries: string[] = [];
  private binaries: string[] = [];
  /** Docker is older than DeviceRequests (API 1.40) but has the nvidia runtime: containers run with it instead. */
  private legacyRuntime = false;

  constructor(options: NvidiaOptions = {}) {
    this.options = {
      smi: 'nvidia-smi',
      procRoot: '/proc',
      sysRoot: '/sys',
      devRoot: '/dev',
      timeoutMs: 5000,
      allow: () => [],
      binDirs: (process.env.PATH ?? '/usr/bin:/bin').split(':').filter(Boolean),
      ...options,
    };
  }

  async detect(): Promise<AcceleratorState> {
    const at = Date.now();
    const none = (reason: string, fix: string, extra: Partial<AcceleratorState> = {}): AcceleratorState => ({
      kind: this.kind,
      path: 'none',
      devices: [],
      excluded: 0,
      figures: [],
      reason,
      fix,
      at,
      driverFound: true,
      ...extra,
    });
    const driverDir = path.join(this.options.procRoot, 'driver/nvidia');
    let rows: SmiRow[];
    try {
      rows = parseSmiCsv(
        await runProbe(this.options.smi, [`--query-gpu=${SMI_FIELDS.join(',')}`, '--format=csv,noheader,nounits'], this.options.timeoutMs),
      );
    } catch (err) {
      if (!existsSync(driverDir)) {
        return none(
          `no NVIDIA driver (${driverDir} is missing; ${errorMessage(err)})`,
          'install the NVIDIA driver and nvidia-container-toolkit, or run kernels with gpu_slot 0 on this node',
          { driverFound: false },
        );
      }
      return none(
        `the NVIDIA driver is loaded but ${errorMessage(err)}`,
        'run nvidia-smi by hand: a driver that does not answer is wedged or mismatched (reboot after a driver upgrade)',
      );
    }
    if (rows.length === 0)
      return none('the NVIDIA driver lists no devices', 'check that the GPUs are seated and powered (lspci | grep -i nvidia)');
    const allow = this.options.allow();
    const usable = rows.filter((r) => allowed(r, allow));
    if (usable.length === 0)
      return none(
        `gpu_allow (${allow.join(',')}) excludes all ${rows.length} device(s)`,
        'list the indexes or UUIDs of nvidia-smi -L in gpu_allow, or empty it',
        { excluded: rows.length },
      );
    const devices = await Promise.all(usable.map((r) => this.device(r)));
    const figures: DeviceFigures[] = usable.map((r) => ({
      index: r.index,
      memoryUsedMiB: r.memoryUsedMiB,
      memoryTotalMiB: r.memoryTotalMiB,
      utilizationPct: r.utilizationPct,
    }));
    const found = { devices, figures, excluded: rows.length - usable.length };
    const choice = await this.choosePath(devices);
    if (choice.path === 'none') return none(choice.reason, choice.fix, { excluded: found.excluded });
    return { kind: this.kind, at, driverFound: true, ...found, ...choice };
  }

  /** The sysfs and /proc facts of a device. */
  private async device(r: SmiRow): Promise<AcceleratorDevice> {
    const numaRaw = await fs.readFile(path.join(this.options.sysRoot, 'bus/pci/devices', r.busId, 'numa_node'), 'utf8').catch(() => '-1');
    const numa = Number(numaRaw.trim());
    const info = parseInformation(
      await fs.readFile(path.join(this.options.procRoot, 'driver/nvidia/gpus', r.busId, 'information'), 'utf8').catch(() => ''),
    );
    const minor = Number(info['Device Minor']);
    return {
      index: r.index,
      uuid: r.uuid,
      busId: r.busId,
      name: r.name,
      memoryTotalMiB: r.memoryTotalMiB,
      numaNode: Number.isInteger(numa) && numa >= 0 ? numa : null,
      minor: info['Device Minor'] !== undefined && Number.isInteger(minor) && minor >= 0 ? minor : r.index,
    };
  }

  /** Runtime if Docker has one (or the toolkit with DeviceRequests), else device nodes if they are all there, else none. */
  private async choosePath(devices: readonly AcceleratorDevice[]): Promise<{ path: PassPath; reason: string; fix: string }> {
    const docker = await this.options.docker?.().catch(() => null); // optional: without Docker's view the check says so below
    this.legacyRuntime = false;
    if (docker?.runtimes.includes('nvidia')) {
      this.legacyRuntime = !apiAtLeast(docker.apiVersion, 1, 40);
      return {
        path: 'runtime',
        reason: `Docker has the nvidia runtime registered${this.legacyRuntime ? ` (API ${docker.apiVersion}: containers run with it, no DeviceRequests)` : ''}`,
        fix: '',
      };
    }
    const cli = await this.findBinary('nvidia-container-cli');
    if (cli && docker && apiAtLeast(docker.apiVersion, 1, 40))
      return {
        path: 'runtime',
        reason: `Docker API ${docker!.apiVersion} takes DeviceRequests and the NVIDIA container toolkit is installed (${cli})`,
        fix: '',
      };
    const toolkitFix = 'install nvidia-container-toolkit and run nvidia-ctk runtime configure --runtime=docker, then restart dockerd';
    const missing = ['nvidiactl', ...devices.map((d) => `nvidia${d.minor}`)].filter((n) => !existsSync(path.join(this.options.devRoot, n)));
    if (missing.length) {
      return {
        path: 'none',
        reason: `no NVIDIA container runtime, and ${missing.map((n) => path.join(this.options.devRoot, n)).join(', ')} missing for the device-node path`,
        fix: `${toolkitFix}; or create the nodes (nvidia-modprobe -c 0 -u)`,
      };
    }
    const ld = await (this.options.ldconfig ?? (() => runProbe('ldconfig', ['-p'], this.options.timeoutMs)))().catch(() => '');
    this.libraries = driverLibraries(ld);
    this.binaries = (await Promise.all(DRIVER_BINARIES.map((b) => this.findBinary(b)))).filter((b): b is string => b !== null);
    if (!this.libraries.some((l) => path.basename(l).startsWith('libcuda.so'))) {
      return {
        path: 'none',
        reason: 'no NVIDIA container runtime, and ldconfig -p lists no libcuda.so for the device-node path',
        fix: `${toolkitFix}; or install the driver's libraries (libcuda1) and run ldconfig`,
      };
    }
    return {
      path: 'device-nodes',
      reason: `no NVIDIA container runtime; device nodes under ${this.options.devRoot} and ${this.libraries.length} driver libraries bind-mounted`,
      fix: `for DeviceRequests: ${toolkitFix}`,
    };
  }

  private async findBinary(name: string): Promise<string | null> {
    for (const dir of this.options.binDirs) {
      const file = path.join(dir, name);
      if (await executable(file)) return file;
    }
    return null;
  }

  async processMemory(): Promise<Array<{ pid: number; usedMiB: number }>> {
    return parseComputeApps(
      await runProbe(this.options.smi, ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'], this.options.timeoutMs),
    );
  }

  hostConfig(devices: readonly AcceleratorDevice[], via: PassPath): DeviceHostConfig {
    const cfg: DeviceHostConfig = { env: [], binds: [], devices: [], deviceRequests: [], runtime: null };
    if (devices.length === 0 || via === 'none') return cfg;
    cfg.env.push(`CUDA_VISIBLE_DEVICES=${devices.map((_, i) => i).join(',')}`);
    if (via === 'runtime') {
      const uuids = devices.map((d) => d.uuid);
      cfg.env.push(`NVIDIA_VISIBLE_DEVICES=${uuids.join(',')}`, 'NVIDIA_DRIVER_CAPABILITIES=compute,utility');
      if (this.legacyRuntime)
        cfg.runtime = 'nvidia'; // the runtime reads NVIDIA_VISIBLE_DEVICES
      else cfg.deviceRequests.push({ Driver: 'nvidia', DeviceIDs: uuids, Capabilities: [['gpu']] });
      return cfg;
    }
    const node = (name: string) => ({
      PathOnHost: path.join(this.options.devRoot, name),
      PathInContainer: `/dev/${name}`,
      CgroupPermissions: 'mrw',
    });
    cfg.devices.push(...devices.map((d) => node(`nvidia${d.minor}`)));
    cfg.devices.push(...CONTROL_NODES.filter((n) => existsSync(path.join(this.options.devRoot, n))).map(node));
    cfg.binds.push(...this.libraries.map((l) => `${l}:${CONTAINER_DRIVER_DIR}/lib64/${path.basename(l)}:ro`));
    cfg.binds.push(...this.binaries.map((b) => `${b}:${CONTAINER_DRIVER_DIR}/bin/${path.basename(b)}:ro`));
    cfg.env.push(`LD_LIBRARY_PATH=${CONTAINER_DRIVER_DIR}/lib64`);
    return cfg;
  }
}
