/**
 * The binding of a claimed warm container to its kernel, taken out of the
 * pool (src/pool/pool.ts; WarmPool.bind delegates here): the claim record,
 * the home renamed to the kernel's, the exact cores and memory, a frozen
 * container unpaused, and on failure the container discarded.
 */
import { promises as fs } from 'node:fs';
import { prepareScratch } from '../containers/launch.js';
import type { KernelSpec } from '../containers/spec.js';
import type { ClaimStore } from './claims.js';
import { setLimits } from './fill.js';
import type { PoolFreezer } from './freeze.js';
import { limitsExact } from './pinning.js';
import type { PooledContainer, WarmPoolDeps } from './types.js';
import { removeTree } from '../scratch/home-ops.js';

/** What a binding needs of the warm pool. */
export interface BindTarget {
  readonly deps: WarmPoolDeps;
  readonly claims: ClaimStore;
  readonly freezer: PoolFreezer;
  readonly claimTotals: Map<string, number>;
  /** The home a claim gives kernel `kernelId`. */
  homeOf(kernelId: string): string;
  /** Removes a claimed container that could not become a kernel, with its home and claim record. */
  discard(containerId: string, dirs: string[]): Promise<void>;
  /** Counts a demand of a pool key now, for the autoscaler. */
  noteDemand(key: string): void;
  /** Brings every image and type towards its target. */
  resize(): void;
}

/**
 * Binds a taken container to a kernel (WarmPool.bind): the claim record first (from then
 * on an agent restart sees a kernel, never an idle container), then at
 * once the home renamed to the kernel's with environ.txt, the exact cores
 * and memory by a live update (none when the container was pinned to
 * exactly these), and `alongside` (the caller's work on the
 * running runner). A frozen container's unpause starts before all of it,
 * and only `alongside` waits for it. On failure (an unpause that fails
 * too) the container and everything of it is removed, once every step has
 * ended, and the first error thrown.
 */
export async function bindClaim(
  pool: BindTarget,
  c: PooledContainer,
  kernelId: string,
  spec: KernelSpec,
  cpuSet: number[],
  alongside: () => Promise<void>,
): Promise<{ scratchDir: string }> {
  const scratchDir = pool.homeOf(kernelId);
  const wasFrozen = c.frozen;
  // The runner is needed by `alongside` only; a restart that finds the claim record with the container still paused unpauses it (src/pool/adopt.ts).
  const thawed = pool.freezer.thaw(c);
  const thawEnded = thawed.then(
    () => undefined,
    () => undefined,
  );
  try {
    await pool.claims.write(c.containerId, { kernelId, lang: c.lang, cpuSet, memMiB: spec.memMiB, createdAt: Date.now() });
    const steps = await Promise.allSettled([
      moveHome(pool, c.home, scratchDir, spec.environ),
      limitsExact(c.limits, cpuSet, spec.memMiB) ? Promise.resolve() : setLimits(pool.deps.docker, c.containerId, cpuSet, spec.memMiB),
      thawed.then(alongside),
    ]);
    const failed = steps.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (err) {
    await thawEnded;
    await pool.discard(c.containerId, [c.home, scratchDir]);
    pool.deps.gpus?.release(c.gpuSet);
    throw err;
  }
  pool.noteDemand(c.key);
  pool.claimTotals.set(c.key, (pool.claimTotals.get(c.key) ?? 0) + 1);
  pool.deps.log.info('claimed a warm container', {
    kernelId,
    container: c.containerId.slice(0, 12),
    pool: c.key,
    cpuSet,
    memMiB: spec.memMiB,
    updated: !limitsExact(c.limits, cpuSet, spec.memMiB),
    wasFrozen,
  });
  queueMicrotask(() => pool.resize());
  return { scratchDir };
}

/** Renames a pooled home to a kernel's (the running container's bind mount follows it) and writes its environ.txt. */
async function moveHome(pool: BindTarget, home: string, scratchDir: string, environ: Record<string, string>): Promise<void> {
  await removeTree(scratchDir); // a leftover of a crash; no kernel holds it
  await fs.rename(home, scratchDir);
  await prepareScratch(scratchDir, environ, pool.deps.kernelSettings().kernelUid);
}
