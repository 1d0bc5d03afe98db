/**
 * CgroupStats samples one kernel container's resource figures straight from
 * the kernel's files: cgroups (v1 or v2), /proc/<pid>/net/dev and the scratch
 * home (statfs of a mounted one, else a bounded walk of the folder). It never asks Docker: the stats API blocks for a CPU
 * sampling period (hundreds of ms per container), which does not scale to
 * periodic samples of every kernel on a node.
 */
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import type { KernelStats } from '../rpc/results.js';
import { fsFigures, isMountPoint } from '../scratch/mounts.js';
import { homeUsage } from '../scratch/home-ops.js';

/** What {@link CgroupStats.read} needs to find one container's figures. */
export interface StatsTarget {
  /** The full (64 hex digit) Docker container id. */
  containerId: string;
  /** The container's main pid on the host, or null when it is not running. */
  pid: number | null;
  /** The host directory mounted as the kernel's home. */
  scratchDir: string;
}

/** Entries the scratch walk visits at most, so a kernel with millions of files cannot stall sampling. */
export const SCRATCH_WALK_LIMIT = 100_000;

/** The figures a sample holds; those whose file could not be read are null (unknown), never 0. */
export type KernelFigures = { [K in keyof Omit<KernelStats, 'end_detail' | 'exit_code' | 'gpu_mem_max_bytes'>]: number | null };

/** A v1 controller whose directory tells us where the container's cgroup is (all are laid out alike). */
const PROBE_CONTROLLER = 'memory';

interface Known {
  /** The container's cgroup path relative to the hierarchy root, once found. */
  rel?: string;
  maxScratch: number;
  /** The figures last read: a container that died (its cgroup gone) reports these, never zeros (issue 28). */
  last?: KernelFigures;
}

/**
 * Reads one container's figures from cgroups (v1 or v2, detected once),
 * /proc/<pid>/net/dev and the scratch dir size; never the Docker stats API.
 * A figure whose file is missing (container gone, controller absent) is the
 * last one read of that container (a kernel that died reports what it last
 * used, never zeros), else 0 in `read` and null (unknown) in `sample`; both
 * throw only on a programming error.
 */
export class CgroupStats {
  /** Which layout this host has: 'v1' (legacy or hybrid) or 'v2' (unified only). */
  readonly version: 'v1' | 'v2';
  private readonly root: string;
  private readonly known = new Map<string, Known>();

  constructor(options: { cgroupRoot?: string } = {}) {
    this.root = options.cgroupRoot ?? '/sys/fs/cgroup';
    // Only a pure v2 mount has cgroup.controllers at the root; a hybrid host
    // keeps v2 under unified/ with no controllers in it, so it counts as v1.
    this.version = existsSync(path.join(this.root, 'cgroup.controllers')) ? 'v2' : 'v1';
  }

  /** Samples the container now. Scratch sizes are in bytes as `du` counts them (allocated blocks). */
  async read(target: StatsTarget): Promise<KernelStats> {
    const f = await this.sample(target);
    return Object.fromEntries(Object.entries(f).map(([k, v]) => [k, v ?? 0])) as unknown as KernelStats;
  }

  /** Samples the container now, each figure that could not be read null (the Redis stats report it as unknown). */
  async sample(target: StatsTarget): Promise<KernelFigures> {
    const { containerId, pid, scratchDir } = target;
    if (!/^[0-9a-f]{64}$/.test(containerId)) throw new TypeError(`not a container id: ${JSON.stringify(containerId)}`);
    if (pid !== null && !(Number.isInteger(pid) && pid > 0)) throw new TypeError(`not a pid: ${pid}`);
    let known = this.known.get(containerId);
    if (!known) this.known.set(containerId, (known = { maxScratch: 0 }));

    // The pid may have exited and been reused by an unrelated process; its
    // cgroup file tells us whether it still belongs to this container, and
    // only then are its net/dev and cgroup path about the container.
    const procCgroup = pid === null ? null : readText(`/proc/${pid}/cgroup`);
    const pidIsOurs = procCgroup !== null && procCgroup.includes(containerId);
    known.rel ??= await this.locate(containerId, pidIsOurs ? procCgroup : null);

    const cg = this.readCgroupKnown(known.rel);
    const net = (pidIsOurs ? readNetDev(`/proc/${pid}/net/dev`) : null) ?? { rx: null, tx: null };
    // A mounted home (hostfile, memory) has its file system's own figures; a plain folder is walked (bounded, never through a link).
    const scratch = (await isMountPoint(scratchDir)) ? (await fsFigures(scratchDir)).used : await homeUsage(scratchDir, SCRATCH_WALK_LIMIT);
    known.maxScratch = Math.max(known.maxScratch, scratch);
    const now: KernelFigures = {
      ...cg,
      net_rx_bytes: net.rx,
      net_tx_bytes: net.tx,
      io_max_scratch_size: known.maxScratch,
      io_cur_scratch_size: scratch,
    };
    const last = known.last;
    if (last) for (const k of Object.keys(now) as Array<keyof KernelFigures>) now[k] ??= last[k];
    known.last = now;
    return now;
  }

  /**
   * Reads only the container's CPU time (ms) and current memory (bytes) from
   * its cgroup: a few small files, no scratch walk, so it is cheap enough for
   * listings. Zeros while the cgroup cannot be found.
   */
  async readUsage(target: Omit<StatsTarget, 'scratchDir'>): Promise<{ cpu_used: number; mem_cur_bytes: number }> {
    if (!/^[0-9a-f]{64}$/.test(target.containerId)) throw new TypeError(`not a container id: ${JSON.stringify(target.containerId)}`);
    const cg = this.readCgroup(await this.cgroupOf(target));
    return { cpu_used: cg.cpu_used, mem_cur_bytes: cg.mem_cur_bytes };
  }

  /**
   * How many times the kernel's memory cgroup has OOM-killed a process
   * (`oom_kill` of memory.oom_control on v1, memory.events on v2), or null
   * when the cgroup cannot be found or the kernel does not count them.
   */
  async oomKills(target: Omit<StatsTarget, 'scratchDir'>): Promise<number | null> {
    if (!/^[0-9a-f]{64}$/.test(target.containerId)) return null;
    const rel = await this.cgroupOf(target);
    if (rel === undefined) return null;
    const text =
      this.version === 'v2'
        ? readText(path.join(this.root, rel, 'memory.events'))
        : readText(path.join(this.root, 'memory', rel, 'memory.oom_control'));
    const m = /^oom_kill (\d+)$/m.exec(text ?? '');
    return m ? Number(m[1]) : null;
  }

  /** Drops what this object remembers of a container (its peak scratch size); call it once the kernel is gone. */
  forget(containerId: string): void {
    this.known.delete(containerId);
  }

  /** The container's cgroup path (found once, from its pid's cgroup file where that pid is still the container's). */
  private async cgroupOf(target: Omit<StatsTarget, 'scratchDir'>): Promise<string | undefined> {
    const { containerId, pid } = target;
    let known = this.known.get(containerId);
    if (!known) this.known.set(containerId, (known = { maxScratch: 0 }));
    if (known.rel === undefined) {
      const procCgroup = pid === null ? null : readText(`/proc/${pid}/cgroup`);
      known.rel = await this.locate(containerId, procCgroup !== null && procCgroup.includes(containerId) ? procCgroup : null);
    }
    return known.rel;
  }

  /** The container's cgroup path relative to the hierarchy root, or undefined when none exists (yet). */
  private async locate(id: string, procCgroup: string | null): Promise<string | undefined> {
    const candidates: string[] = [];
    if (procCgroup !== null) {
      // v2: "0::/path"; v1: "N:ctl,ctl:/path" and we take the probe controller's line.
      for (const line of procCgroup.split('\n')) {
        const m = /^\d+:([^:]*):(.*)$/.exec(line);
        if (!m) continue;
        const [, ctls, p] = m as unknown as [string, string, string];
        const wanted = this.version === 'v2' ? ctls === '' : ctls.split(',').includes(PROBE_CONTROLLER);
        if (wanted && p.includes(id)) candidates.push(p.replace(/^\/+/, ''));
      }
    }
    candidates.push(`docker/${id}`, `system.slice/docker-${id}.scope`);
    const base = this.version === 'v2' ? this.root : path.join(this.root, PROBE_CONTROLLER);
    for (const rel of candidates) {
      if (await isDir(path.join(base, rel))) return rel;
    }
    return undefined; // not cached: the container may not have started yet
  }

  private readCgroup(rel: string | undefined): { cpu_used: number; mem_cur_bytes: number } {
    const f = this.readCgroupKnown(rel);
    return { cpu_used: f.cpu_used ?? 0, mem_cur_bytes: f.mem_cur_bytes ?? 0 };
  }

  /** The cgroup's figures, null where a file could not be read. */
  private readCgroupKnown(
    rel: string | undefined,
  ): Omit<KernelFigures, 'net_rx_bytes' | 'net_tx_bytes' | 'io_max_scratch_size' | 'io_cur_scratch_size'> {
    if (rel === undefined) return { cpu_used: null, mem_max_bytes: null, mem_cur_bytes: null, io_read_bytes: null, io_write_bytes: null };
    if (this.version === 'v2') {
      const dir = path.join(this.root, rel);
      const [cpuStat, peak, current, ioStat] = ['cpu.stat', 'memory.peak', 'memory.current', 'io.stat'].map((f) =>
        readText(path.join(dir, f)),
      );
      const io = ioStat === null ? null : sumKeys(ioStat, ['rbytes', 'wbytes']);
      const cur = current === null ? null : toNumber(current);
      const usec = /^usage_usec (\d+)/m.exec(cpuStat ?? '')?.[1];
      return {
        cpu_used: usec === undefined ? null : Number(toBigInt(usec) / 1000n),
        // memory.peak only exists since Linux 5.19; the current value is the best lower bound before that.
        mem_max_bytes: peak === null ? cur : toNumber(peak),
        mem_cur_bytes: cur,
        io_read_bytes: io?.rbytes ?? null,
        io_write_bytes: io?.wbytes ?? null,
      };
    }
    const at = (ctl: string, f: string) => readText(path.join(this.root, ctl, rel, f));
    const usage = at('cpuacct', 'cpuacct.usage');
    const maxUsage = at('memory', 'memory.max_usage_in_bytes');
    const curUsage = at('memory', 'memory.usage_in_bytes');
    const blkio = at('blkio', 'blkio.throttle.io_service_bytes');
    // Lines are "MAJ:MIN Op bytes" plus a final "Total bytes"; sum per op over devices.
    let read = 0;
    let write = 0;
    for (const line of (blkio ?? '').split('\n')) {
      const [dev, op, n] = line.trim().split(/\s+/);
      if (dev?.includes(':') && op === 'Read') read += toNumber(n);
      if (dev?.includes(':') && op === 'Write') write += toNumber(n);
    }
    return {
      // Nanoseconds overflow 2^53 after ~104 days of CPU time, so divide as a bigint.
      cpu_used: usage === null ? null : Number(toBigInt(usage) / 1_000_000n),
      mem_max_bytes: maxUsage === null ? null : toNumber(maxUsage),
      mem_cur_bytes: curUsage === null ? null : toNumber(curUsage),
      io_read_bytes: blkio === null ? null : read,
      io_write_bytes: blkio === null ? null : write,
    };
  }
}

/**
 * A cgroup or /proc file's text, or null when it cannot be read (gone,
 * absent controller, process exited). Read synchronously on purpose: these
 * files live in the kernel's memory and answer in microseconds, while an
 * async read costs four thread-pool round trips each (open, stat, read,
 * close), which made sampling 100 kernels every heartbeat most of an idle
 * agent's CPU.
 */
function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if (isSystemError(err)) return null;
    throw err;
  }
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isDirectory();
  } catch (err) {
    if (isSystemError(err)) return false;
    throw err;
  }
}

/** Any errno failure (ENOENT, ESRCH, ENODEV...) is the world changing under us, not a bug. */
function isSystemError(err: unknown): boolean {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string';
}

function toNumber(s: string | null | undefined): number {
  const n = Number.parseInt(s?.trim() ?? '', 10);
  return Number.isFinite(n) && n >= 0 ? n : 0;
}

function toBigInt(s: string | null | undefined): bigint {
  const t = s?.trim() ?? '';
  return /^\d+$/.test(t) ? BigInt(t) : 0n;
}

/** Sums `key=value` fields over all lines (v2 io.stat has one line per device). */
function sumKeys(text: string, keys: string[]): Record<string, number> {
  const out: Record<string, number> = Object.fromEntries(keys.map((k) => [k, 0]));
  for (const m of text.matchAll(/(\w+)=(\d+)/g)) {
    if (m[1]! in out) out[m[1]!] += toNumber(m[2]);
  }
  return out;
}

/** Received and sent bytes over all interfaces but lo; null when the process is gone. */
function readNetDev(file: string): { rx: number; tx: number } | null {
  const text = readText(file);
  if (text === null) return null;
  let rx = 0;
  let tx = 0;
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':'); // split on ':' first: big counters touch the name ("eth0:123")
    if (colon < 0 || line.slice(0, colon).trim() === 'lo') continue;
    const f = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/);
    rx += toNumber(f[0]);
    tx += toNumber(f[8]);
  }
  return { rx, tx };
}
