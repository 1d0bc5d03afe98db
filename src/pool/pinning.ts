/**
 * Where an idle pooled container waits, as a pure function. Once its runner
 * answers, a pooled container is given the cores, memory and CPU weight a
 * claim of its type would give it; a claim whose allocated cores are exactly
 * those (and whose memory is the type's) then needs no live update, which
 * is the slowest step of a claim (a `docker update` runs `runc`). The cores
 * are the ones the allocator would hand out next — the least loaded, lowest
 * index first — counting the cores already pinned by idle containers of the
 * same pool as load, so that a pool of several containers covers several
 * likely choices. A wrong guess costs only the update.
 */

/**
 * The cores to pin a new idle container of `count` cores to: the least
 * loaded of `cores`, by the allocator's load plus the pins of the pool's
 * other idle containers, lowest index first; sorted.
 */
export function pinCores(
  cores: readonly number[],
  count: number,
  allocatorLoad: ReadonlyMap<number, number>,
  pins: ReadonlyArray<readonly number[]>,
): number[] {
  const load = new Map(cores.map((c) => [c, allocatorLoad.get(c) ?? 0]));
  for (const pin of pins) for (const c of pin) if (load.has(c)) load.set(c, load.get(c)! + 1);
  const n = Math.min(Math.max(1, count), cores.length);
  return [...load]
    .sort((a, b) => a[1] - b[1] || a[0] - b[0])
    .slice(0, n)
    .map(([c]) => c)
    .sort((a, b) => a - b);
}

/** The exact limits a pooled container has been given. */
export interface PinnedLimits {
  cpuSet: number[];
  memMiB: number;
}

/** Whether a claim of these cores and memory finds the container's limits already exact. */
export function limitsExact(pinned: PinnedLimits | null, cpuSet: readonly number[], memMiB: number): boolean {
  return pinned !== null && pinned.memMiB === memMiB && pinned.cpuSet.join(',') === cpuSet.join(',');
}
