/**
 * What /proc says about a process (Linux): RSS, descriptors, sockets and
 * CPU time. The density figure and the soak (tests/soak/) both read an
 * agent's figures through this.
 */
import { promises as fs } from 'node:fs';
import { parseCpuLine } from '../../src/node/stats.js';

/** RSS (KiB), open descriptors and sockets of a process. */
export interface ProcFigures {
  rssKiB: number;
  fds: number;
  sockets: number;
}

/** RSS of a process in KiB, from /proc/<pid>/status. */
export async function rssKiB(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
}

/** RSS, open descriptors and sockets of a process. */
export async function procFigures(pid: number): Promise<ProcFigures> {
  const rss = await rssKiB(pid);
  const fds = await fs.readdir(`/proc/${pid}/fd`);
  let sockets = 0;
  for (const fd of fds) {
    const target = await fs.readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    if (target.startsWith('socket:')) sockets++;
  }
  return { rssKiB: rss, fds: fds.length, sockets };
}

/** CPU time (ns) the process has used, all threads, from each thread's `schedstat`. */
export async function cpuNs(pid: number): Promise<number> {
  let total = 0;
  for (const tid of await fs.readdir(`/proc/${pid}/task`)) {
    const line = await fs.readFile(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').catch(() => '0');
    total += Number(line.split(' ')[0]) || 0;
  }
  return total;
}

/** CPU time (ns) of a process by thread name (`comm`: the main thread has the process's name), from each thread's `schedstat`. */
export async function cpuNsByThread(pid: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const tid of await fs.readdir(`/proc/${pid}/task`)) {
    const [line, comm] = await Promise.all([
      fs.readFile(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').catch(() => '0'),
      fs.readFile(`/proc/${pid}/task/${tid}/comm`, 'utf8').catch(() => '?'),
    ]);
    const name = tid === String(pid) ? 'main' : comm.trim();
    out[name] = (out[name] ?? 0) + (Number(line.split(' ')[0]) || 0);
  }
  return out;
}

/** Busy and total jiffies of all CPUs, as the agent's own node figures read them. */
async function machineJiffies(): Promise<{ busy: number; total: number }> {
  return parseCpuLine(await fs.readFile('/proc/stat', 'utf8'), Date.now());
}

/**
 * Waits until the whole machine is quiet: busy under `busyShare` of all its
 * cores over a window of `windowMs`, for at most `timeoutMs`. A latency
 * figure calls it before a burst, so that it measures the burst and not the
 * tail of what the last round set off (containers still being removed, a
 * pool's new runners still starting). Resolves with the share of the last
 * window and whether it was quiet.
 */
export async function waitForQuiet(busyShare = 0.2, windowMs = 300, timeoutMs = 15_000): Promise<{ busy: number; quiet: boolean }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const a = await machineJiffies();
    await new Promise((r) => setTimeout(r, windowMs));
    const b = await machineJiffies();
    const busy = (b.busy - a.busy) / Math.max(1, b.total - a.total);
    if (busy < busyShare) return { busy, quiet: true };
    if (Date.now() > deadline) return { busy, quiet: false };
  }
}
