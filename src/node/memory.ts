/**
 * The node's schedulable capacity and the memory book beside the core
 * allocator (src/kernels/allocator.ts). Memory is accounted like cores: every
 * kernel's memory limit (and the size of its home when that is a tmpfs,
 * scratch_type memory) is charged to the book when its cores are taken and
 * given back when they are, so the limits the agent has promised never add
 * up to more than the node's memory minus `mem_reserve`, times
 * `mem_overcommit`. The book is keyed by kernel id, so a charge is never
 * counted twice and a release of what was never charged is harmless.
 */
import os from 'node:os';
import { ImpossibleRequestError } from '../errors.js';
import type { SlotFigures } from '../rpc/results.js';
import type { Settings } from '../config/setting-table.js';

/** Capacity is what the node offers kernels in all: the heartbeat's `cpu_slots` and `mem_slots`. */
export interface Capacity {
  /** Core places: the node's cores times cpu_overcommit. */
  cpuSlots: number;
  /** MiB kernels' memory limits may add up to. */
  memSlotsMiB: number;
}

/** The node's memory in MiB as the kernel reports it. */
export function nodeMemoryMiB(): number {
  return Math.floor(os.totalmem() / (1024 * 1024));
}

/** Computes the schedulable totals: (memory - mem_reserve) x mem_overcommit, cores x cpu_overcommit. */
export function schedulable(
  node: { cores: number; memMiB: number },
  s: Pick<Settings, 'cpuOvercommit' | 'memReserveMiB' | 'memOvercommit'>,
): Capacity {
  return {
    cpuSlots: node.cores * s.cpuOvercommit,
    memSlotsMiB: Math.max(0, Math.floor((node.memMiB - s.memReserveMiB) * s.memOvercommit)),
  };
}

/** MemoryExhausted is thrown by {@link MemoryBook.take} when a charge does not fit now. */
export class MemoryExhausted extends Error {}

export class MemoryBook {
  private readonly charges = new Map<string, number>();

  /** `capacityMiB` is read at every charge: the reserve and overcommit settings are live. */
  constructor(private readonly capacityMiB: () => number) {}

  /**
   * Charges `mib` to `owner` (replacing what it held, as a restart with a new
   * limit does); throws MemoryExhausted, charging nothing, when it does not fit.
   */
  take(owner: string, mib: number): void {
    const held = this.charges.get(owner) ?? 0;
    const free = this.capacityMiB() - (this.used - held);
    if (mib > free) {
      throw new MemoryExhausted(`${mib} MiB requested, ${Math.max(0, free)} of ${this.capacityMiB()} MiB schedulable are free`);
    }
    this.charges.set(owner, mib);
  }

  /** Charges a kernel that runs already (a re-adopted one): it holds its memory whether or not the books agree. */
  claim(owner: string, mib: number): void {
    this.charges.set(owner, mib);
  }

  /** Gives back what `owner` holds (nothing when it holds nothing). */
  release(owner: string): void {
    this.charges.delete(owner);
  }

  /** MiB charged in all. */
  get used(): number {
    let total = 0;
    for (const n of this.charges.values()) total += n;
    return total;
  }

  /** MiB free now (never below 0, even when re-adopted kernels overfill the book). */
  get free(): number {
    return Math.max(0, this.capacityMiB() - this.used);
  }

  /** What each owner holds (for tests and stats). */
  usage(): Record<string, number> {
    return Object.fromEntries(this.charges);
  }
}

/**
 * Refuses, before anything is taken, a request this node could never hold,
 * however many kernels went away: more cores than it has, a core it lacks,
 * more memory than it can schedule. A request that could fit later is left
 * to the allocators (a retryable NoResourcesError).
 */
export function checkPossible(
  req: { cpuCount: number; cpuSet: readonly number[] | null; memMiB: number; homeMemMiB?: number },
  node: { cores: readonly number[]; memSlotsMiB: number; memReserveMiB: number },
): void {
  const have = `this node has ${node.cores.length} cores (${node.cores.join(',') || 'none'}) and ${node.memSlotsMiB} MiB schedulable memory (mem_reserve ${node.memReserveMiB} MiB kept back)`;
  if (req.cpuSet) {
    if (req.cpuSet.length === 0) throw new ImpossibleRequestError(`config cpu_set must name at least one core; ${have}`);
    const missing = req.cpuSet.filter((c) => !node.cores.includes(c));
    if (missing.length)
      throw new ImpossibleRequestError(`config cpu_set names core(s) ${missing.join(',')} this node does not have; ${have}`);
  }
  if (req.cpuCount > node.cores.length)
    throw new ImpossibleRequestError(`the kernel asks for ${req.cpuCount} cores, more than this node will ever hold: ${have}`);
  const home = req.homeMemMiB ?? 0;
  if (req.memMiB + home > node.memSlotsMiB)
    throw new ImpossibleRequestError(
      `the kernel asks for ${req.memMiB + home} MiB of memory${home ? ` (${req.memMiB} MiB and its ${home} MiB memory home)` : ''}, more than this node will ever hold: ${have}`,
    );
}

/** The slot figures of get_node_stats: the totals and what is free of them now. */
export function slotFigures(k: { capacity(): Capacity; freeSlots(): Capacity }): SlotFigures {
  const total = k.capacity();
  const free = k.freeSlots();
  return { cpu_total: total.cpuSlots, cpu_free: free.cpuSlots, mem_total_mib: total.memSlotsMiB, mem_free_mib: free.memSlotsMiB };
}
