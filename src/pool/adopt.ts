/**
 * The warm pool at an agent's start: pooled containers left running by the
 * last run are taken back (a claimed one is a kernel, by its claim record;
 * an idle one rejoins the pool with its memory charged, unpaused first when
 * it was left frozen), dead ones and homes no container holds are removed.
 * Also the pool's relay to a runner and its readiness ping.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../errors.js';
import { KERNEL_PORTS, type ContainerSummary } from '../adapters/docker.js';
import { parseCoreList } from '../containers/launch.js';
import { LABELS } from '../adapters/labels.js';
import { imageTraits } from '../containers/image-traits.js';
import { KernelRelay } from '../relay/kernel-relay.js';
import type { ClaimRecord, ClaimStore } from './claims.js';
import type { PoolCharges } from './charges.js';
import { poolImage, type PooledContainer, type WarmPoolDeps } from './types.js';
import { removeTree } from '../scratch/home-ops.js';

export const poolKey = (lang: string, type: string) => `${lang}/${type}`;
export const splitKey = (key: string) => {
  const i = key.lastIndexOf('/');
  return { lang: key.slice(0, i), type: key.slice(i + 1) };
};

/** What adoption works on: the pool's books. */
export interface AdoptTarget {
  readonly deps: WarmPoolDeps;
  readonly idle: Map<string, PooledContainer>;
  readonly claimed: Map<string, string>;
  readonly claims: ClaimStore;
  readonly charges: PoolCharges;
}

/**
 * The claim record of a pooled container found at start (it is then a
 * kernel), or null (it is idle). A claimed container still paused (the
 * agent died while the claim unpaused it) is unpaused; one that cannot be
 * stays not running, and the kernel's re-adoption removes it as dead.
 */
export async function claimOf(pool: AdoptTarget, c: ContainerSummary): Promise<ClaimRecord | null> {
  const rec = await pool.claims.read(c.id);
  if (!rec) return null;
  pool.claimed.set(c.id, c.labels[LABELS.pool] ?? '');
  if (c.paused) {
    await pool.deps.docker.setPaused(c.id, false).then(
      () => {
        Object.assign(c, { running: true, paused: false }); // what the kernel's re-adoption reads next
        pool.deps.log.info('unpaused a claimed pooled container left paused', { kernelId: rec.kernelId, container: c.id.slice(0, 12) });
      },
      (err: unknown) =>
        pool.deps.log.warn('could not unpause a claimed pooled container', {
          kernelId: rec.kernelId,
          container: c.id.slice(0, 12),
          error: errorMessage(err),
        }),
    );
  }
  return rec;
}

/**
 * Takes back an idle pooled container found at start, its memory limit
 * charged; one that is dead, lost its home or cannot be unpaused is removed.
 */
export async function adoptIdle(pool: AdoptTarget, c: ContainerSummary): Promise<void> {
  const { docker, scratchRoot, log } = pool.deps;
  const slot = c.labels[LABELS.poolSlot] ?? '';
  const home = path.join(scratchRoot, '.pool', slot);
  const state = c.running || c.paused ? await docker.inspect(c.id) : null;
  const ports = KERNEL_PORTS.map((p) => state?.ports[p]);
  const homeOk =
    /^[0-9a-f]+$/.test(slot) &&
    (await fs.stat(home).then(
      (s) => s.isDirectory(),
      () => false,
    ));
  const { lang, type } = splitKey(c.labels[LABELS.pool] ?? '/');
  const gpuSet = parseCoreList(c.labels[LABELS.gpuSet]);
  // Left frozen by the last run: running again before it rejoins (pool/freeze pauses it again after a check).
  let thawed = true;
  if (state?.paused) {
    thawed = await docker.setPaused(c.id, false).then(
      () => true,
      (err: unknown) => {
        log.warn('could not unpause a pooled container left paused', { container: c.id.slice(0, 12), error: errorMessage(err) });
        return false;
      },
    );
  }
  const image = lang ? poolImage(pool.deps.kernelSettings(), lang) : null; // null: the lang names no image now
  if (!state?.running || ports.some((p) => !p) || !homeOk || image === null || !thawed) {
    await docker.remove(c.id);
    if (homeOk) await removeTree(home);
    log.info('removed a pooled container that died, lost its home or could not be unpaused while the agent was away', {
      container: c.id.slice(0, 12),
    });
    return;
  }
  const traits = await docker.image(image).then(
    (i) => imageTraits(i.labels),
    () => imageTraits({}),
  );
  const memMiB =
    Math.ceil((state.memoryBytes ?? 0) / (1024 * 1024)) || (pool.deps.settings().types.find((t) => t.name === type)?.memMiB ?? 0);
  pool.deps.gpus?.adopt(gpuSet, `pool:${slot}`);
  pool.charges.adopt(slot, memMiB);
  pool.idle.set(c.id, {
    containerId: c.id,
    key: poolKey(lang, type),
    lang,
    type,
    image,
    imageId: c.imageId,
    recipe: c.labels[LABELS.poolRecipe] ?? '',
    slot,
    home,
    pid: state.pid,
    ports: ports as number[],
    traits,
    gpuSet,
    idleSince: Date.now(),
    checkedAt: Date.now(),
    checking: false,
    frozen: false,
    memMiB,
    limits: null,
    relay: null,
  });
}

/** Removes the pooled homes that no idle container holds (left by a crash mid-creation); call after re-adoption. */
export async function sweepHomes(pool: AdoptTarget): Promise<void> {
  const held = new Set([...pool.idle.values()].map((c) => c.slot));
  const root = path.join(pool.deps.scratchRoot, '.pool');
  for (const name of await fs.readdir(root).catch(() => [] as string[])) {
    if (held.has(name)) continue;
    await removeTree(path.join(root, name));
    pool.deps.log.info('removed a pooled home that no container holds', { dir: path.join(root, name) });
  }
}

/** A relay to a pooled container's runner, for its readiness checks (and, by a claim, the kernel's). */
export function openRelay(deps: WarmPoolDeps, ports: number[]): KernelRelay {
  return new KernelRelay({
    host: deps.kernelHost,
    replInPort: ports[0]!,
    replOutPort: ports[1]!,
    log: deps.log.child({ component: 'pool-readiness' }),
    execTimeoutSec: 0,
    onExecTimeout: () => undefined,
    outputFiles: async () => [],
  });
}

/** Whether the runner answers `%ping` within the timeout; throws when it does not. */
export async function pingReady(relay: KernelRelay, timeoutMs: number): Promise<void> {
  const r = await relay.runToEnd('%ping', timeoutMs);
  if (r.exitCode !== 0) throw new Error(`the runner answered %ping with exit code ${r.exitCode}`);
}
