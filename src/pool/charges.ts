/**
 * PoolCharges puts the memory limits of pooled containers in the kernels'
 * memory book (src/node/memory.ts), so that the limits of kernels and
 * pooled containers together never exceed the node's schedulable memory:
 * a fill is charged before its container is created (none is created
 * without room; the pool stops filling at the bound, logged once per
 * image and type until it fills again), an idle container holds its charge
 * under `pool:<slot>`, a claim moves it to the kernel's id (never counted
 * twice), and a drop or a failed fill gives it back. Re-adoption charges
 * the idle containers found at start with their Docker memory limit.
 */
import { MemoryExhausted, type MemoryBook } from '../node/memory.js';
import type { Logger } from '../log.js';

/** The book's owner name of a pooled container's charge (GPUs use the same). */
export const poolOwner = (slot: string) => `pool:${slot}`;

export class PoolCharges {
  /** Pools (`<lang>/<type>`) whose fill stopped at the memory bound, already logged. */
  private readonly bounded = new Set<string>();

  constructor(
    private readonly book: () => MemoryBook | null,
    private readonly log: Logger,
  ) {}

  /** How many containers of `memMiB` the book has room for now (no book: no limit). */
  room(memMiB: number): number {
    const b = this.book();
    return b ? Math.floor(b.free / Math.max(1, memMiB)) : Infinity;
  }

  /**
   * Says, once until the pool fills again, that `key` stops below its target
   * for want of schedulable memory; a pass with room for what it wants
   * clears it.
   */
  note(key: string, want: number, room: number, memMiB: number): void {
    if (want === 0) return; // nothing to fill this pass (or no free fill place): no news either way
    if (room >= want) {
      this.bounded.delete(key);
      return;
    }
    if (this.bounded.has(key)) return;
    this.bounded.add(key);
    const b = this.book();
    this.log.warn("the pool stops filling at the node's schedulable memory (mem_reserve, mem_overcommit)", {
      pool: key,
      wanted: want,
      fits: room,
      memMiB,
      freeMiB: b?.free,
      usedMiB: b?.used,
    });
  }

  /** Charges a fill of `slot`; false, charging nothing, when it does not fit now. */
  take(slot: string, memMiB: number): boolean {
    try {
      this.book()?.take(poolOwner(slot), memMiB);
      return true;
    } catch (err) {
      if (err instanceof MemoryExhausted) return false;
      throw err;
    }
  }

  /** Charges an idle container found at start: it holds its memory whether or not the book agrees. */
  adopt(slot: string, memMiB: number): void {
    this.book()?.claim(poolOwner(slot), memMiB);
  }

  /** Gives back what `slot` holds (nothing when it holds nothing). */
  release(slot: string): void {
    this.book()?.release(poolOwner(slot));
  }

  /**
   * Moves a claimed container's charge to its kernel as the kernel's limit
   * (at most the type's, so it always fits in what the container held);
   * false, changing nothing, when the kernel needs more than it held and
   * the rest does not fit.
   */
  transfer(slot: string, kernelId: string, memMiB: number): boolean {
    const b = this.book();
    if (!b) return true;
    const held = b.usage()[poolOwner(slot)] ?? 0;
    b.release(poolOwner(slot));
    try {
      if (memMiB <= held) b.claim(kernelId, memMiB);
      else b.take(kernelId, memMiB);
      return true;
    } catch (err) {
      b.claim(poolOwner(slot), held);
      if (err instanceof MemoryExhausted) return false;
      throw err;
    }
  }
}
