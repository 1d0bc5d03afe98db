/**
 * CpuAllocator hands out CPU cores to kernels. Each core may be shared by at
 * most `overcommit` kernels (1 by default: no sharing); a request takes the
 * least-loaded cores, lowest index first, so kernels spread over the node.
 */

/** NoCoresError is raised when the node has no room for a kernel's cores. */
export class CoresExhausted extends Error {}

export class CpuAllocator {
  private readonly load: Map<number, number>;

  constructor(
    cores: readonly number[],
    private readonly overcommit: number,
  ) {
    if (!Number.isInteger(overcommit) || overcommit < 1) throw new RangeError(`overcommit must be a whole number >= 1, got ${overcommit}`);
    this.load = new Map(cores.map((c) => [c, 0]));
  }

  /**
   * Takes `count` cores, those in `prefer` first (a GPU kernel's NUMA node);
   * throws CoresExhausted (taking nothing) when there is no room.
   */
  allocate(count: number, prefer: readonly number[] | null = null): number[] {
    const near = new Set(prefer ?? []);
    const rank = (c: number) => (near.size === 0 || near.has(c) ? 0 : 1);
    const free = [...this.load]
      .filter(([, n]) => n < this.overcommit)
      .sort((a, b) => rank(a[0]) - rank(b[0]) || a[1] - b[1] || a[0] - b[0]);
    if (count < 1 || free.length < count) {
      throw new CoresExhausted(`${count} cores requested, ${free.length} of ${this.load.size} have room (overcommit ${this.overcommit})`);
    }
    const set = free
      .slice(0, count)
      .map(([c]) => c)
      .sort((a, b) => a - b);
    for (const c of set) this.load.set(c, this.load.get(c)! + 1);
    return set;
  }

  /**
   * Takes exactly these cores (a restart's or a re-adopted kernel's). With
   * `force`, cores already full are taken anyway: a running kernel holds them
   * whether or not the books agree.
   */
  claim(set: readonly number[], force = false): void {
    for (const c of set) {
      if (!this.load.has(c)) throw new CoresExhausted(`core ${c} does not exist on this node (cores: ${[...this.load.keys()].join(',')})`);
      if (!force && this.load.get(c)! >= this.overcommit)
        throw new CoresExhausted(`core ${c} is already taken by ${this.load.get(c)} kernel(s)`);
    }
    for (const c of set) this.load.set(c, this.load.get(c)! + 1);
  }

  /** How many kernels hold each core (for the warm pool's guess of the next allocation). */
  loads(): ReadonlyMap<number, number> {
    return this.load;
  }

  /** Gives cores back. */
  release(set: readonly number[]): void {
    for (const c of set) {
      const n = this.load.get(c);
      if (n !== undefined && n > 0) this.load.set(c, n - 1);
    }
  }

  /** How many kernels hold each core (for tests and stats). */
  usage(): Record<number, number> {
    return Object.fromEntries(this.load);
  }

  /** Total core allocations held. */
  get allocated(): number {
    let total = 0;
    for (const n of this.load.values()) total += n;
    return total;
  }
}
