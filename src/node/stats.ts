/**
 * NodeMonitor reads the node's own figures for heartbeats and
 * `get_node_stats`: CPU busy percent from /proc/stat deltas, memory from
 * /proc/meminfo, and the disk of the scratch root from statfs. Reading is a
 * few small files, cheap enough for every heartbeat.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';

/** The node figures (beyond the 2018 heartbeat): all bytes, CPU as 0-100 over all cores. */
export interface NodeFigures {
  /** Percent of all cores' time spent busy (not idle or iowait) since an earlier sample, 0-100. */
  cpu_pct: number;
  mem_total_bytes: number;
  /** MemAvailable: what new processes can get without swapping. */
  mem_available_bytes: number;
  /** Size of the file system holding the scratch root. */
  disk_total_bytes: number;
  /** Bytes of it available to unprivileged users (statfs bavail). */
  disk_free_bytes: number;
}

/** Jiffies of the aggregate `cpu` line of /proc/stat, with when it was read. */
interface CpuSample {
  at: number;
  busy: number;
  total: number;
}

/** The shortest window a CPU percentage is computed over, when an old enough sample exists. */
const MIN_WINDOW_MS = 1000;

export class NodeMonitor {
  private readonly procRoot: string;
  /** Up to two earlier samples, at least MIN_WINDOW_MS apart, oldest first. */
  private samples: CpuSample[] = [];

  constructor(
    private readonly scratchRoot: string,
    options: { procRoot?: string } = {},
  ) {
    this.procRoot = options.procRoot ?? '/proc';
  }

  /** Reads the figures now. The CPU percentage covers the time since a sample at least 1 s old (since boot on the first read). */
  async read(): Promise<NodeFigures> {
    const [stat, meminfo, disk] = await Promise.all([
      fs.readFile(path.join(this.procRoot, 'stat'), 'utf8'),
      fs.readFile(path.join(this.procRoot, 'meminfo'), 'utf8'),
      fs.statfs(this.scratchRoot),
    ]);
    const mem = parseMeminfo(meminfo);
    return {
      cpu_pct: this.cpuPercent(parseCpuLine(stat, Date.now())),
      mem_total_bytes: mem.MemTotal ?? 0,
      mem_available_bytes: mem.MemAvailable ?? mem.MemFree ?? 0,
      disk_total_bytes: disk.blocks * disk.bsize,
      disk_free_bytes: disk.bavail * disk.bsize,
    };
  }

  private cpuPercent(now: CpuSample): number {
    // The newest earlier sample that is at least MIN_WINDOW_MS old, else the oldest one we have (else boot).
    const base = [...this.samples].reverse().find((s) => now.at - s.at >= MIN_WINDOW_MS) ?? this.samples[0] ?? { at: 0, busy: 0, total: 0 };
    const last = this.samples[this.samples.length - 1];
    if (!last || now.at - last.at >= MIN_WINDOW_MS) this.samples = [...this.samples, now].slice(-2);
    const total = now.total - base.total;
    if (total <= 0) return 0;
    return Math.round((1000 * (now.busy - base.busy)) / total) / 10;
  }
}

/** The aggregate `cpu` line: busy is every field but idle (4th) and iowait (5th); guest time is already in user. */
export function parseCpuLine(stat: string, at: number): CpuSample {
  const line = stat.split('\n').find((l) => /^cpu\s/.test(l));
  if (!line) throw new Error('no aggregate cpu line in /proc/stat');
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { at, busy: total - idle, total };
}

/** /proc/meminfo as bytes by field name (the file says kB, meaning KiB). */
export function parseMeminfo(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^(\w+):\s+(\d+)(?:\s+kB)?$/gm)) {
    out[m[1]!] = Number(m[2]) * (m[0].endsWith('kB') ? 1024 : 1);
  }
  return out;
}
