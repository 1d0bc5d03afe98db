/**
 * What /proc says about a process (Linux): RSS, descriptors, sockets and
 * CPU time. The density figure and the soak (tests/soak/) both read an
 * agent's figures through this.
 */
import { promises as fs } from 'node:fs';

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
