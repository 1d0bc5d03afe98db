/**
 * CPU time a container's cgroup has used, in nanoseconds, read from the
 * cgroup files (v1 `cpuacct.usage`, v2 `cpu.stat` usage_usec; Docker's
 * cgroupfs or systemd layout); NaN when none is found.
 */
import { promises as fs } from 'node:fs';

const read = (p: string) => fs.readFile(p, 'utf8').catch(() => null);

/** The CPU time (ns) the container `id` (full id) has used so far. */
export async function containerCpuNs(id: string): Promise<number> {
  for (const dir of [`docker/${id}`, `system.slice/docker-${id}.scope`]) {
    const v1 = await read(`/sys/fs/cgroup/cpuacct/${dir}/cpuacct.usage`);
    if (v1 !== null) return Number(v1.trim());
    const v2 = await read(`/sys/fs/cgroup/${dir}/cpu.stat`);
    const usec = v2 === null ? null : /^usage_usec (\d+)/m.exec(v2)?.[1];
    if (usec) return Number(usec) * 1000;
  }
  return NaN;
}
