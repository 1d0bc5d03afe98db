/**
 * The hygiene pass of the warm pool, run every `pool/check_interval`: idle
 * pooled containers that died, were built from an image that has since
 * changed (another image id under the same name, or another image prefix),
 * or were made with kernel settings that have since changed (lock-down and
 * log bounds, kernel uid, publish address, /dev/shm size: {@link poolRecipe}) are removed (sizing then
 * replaces them), and so are idle containers whose runner does not answer a
 * readiness check (every `pool/readiness_interval` seconds, 5 s to answer);
 * containers labelled as pooled by this agent that it does not track and
 * that are older than `pool/zombie_allowance` are removed; claim records
 * whose container is gone are deleted.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { errorMessage } from '../errors.js';
import { LABELS } from '../adapters/labels.js';
import type { ContainerSecurity } from '../adapters/docker.js';
import { poolImage, type HygieneTarget } from './types.js';
import { removeTree } from '../scratch/home-ops.js';

/** What of the kernel settings a container is made with and a claim cannot change. */
export type RecipeSettings = {
  kernelUid: number;
  security: ContainerSecurity;
  publishAddr: string;
  kernelShmMiB: number;
  /** The runner environment injected into images without a runner: a new one replaces the containers made with the old. */
  runnerEnv?: { digest: string } | null;
};

/**
 * A short digest of the settings a pooled container is made with and a claim
 * cannot change afterwards (its lock-down and log bounds, the kernel uid, the
 * address its ports are published on, kernel_shm_size, the runner environment); hygiene replaces idle containers whose digest is
 * not the current one, so a settings change reaches the pool too.
 */
export function poolRecipe(s: RecipeSettings): string {
  const { kernelUid, security, publishAddr, kernelShmMiB } = s;
  // `network`: containers pooled before kernels had a network of their own (on Docker's bridge) are replaced.
  const recipe: Record<string, unknown> = { kernelUid, security, publishAddr, kernelShmMiB, network: 'kernel-network' };
  if (s.runnerEnv) recipe.runnerEnv = s.runnerEnv.digest; // absent without one: the recipes of nodes without injection stay as they were
  return createHash('sha256').update(JSON.stringify(recipe)).digest('hex').slice(0, 16);
}

/** Runs one hygiene pass over the pool. */
export async function runHygiene(pool: HygieneTarget): Promise<void> {
  const { docker, log, agentId, scratchRoot } = pool.deps;
  const s = pool.deps.settings();
  const kernelSettings = pool.deps.kernelSettings();
  const recipe = poolRecipe(kernelSettings);
  const listed = await docker.listByLabel(`${LABELS.agent}=${agentId}`);
  const byId = new Map(listed.map((c) => [c.id, c]));

  const imageIds = new Map<string, string | null>();
  const imageId = async (name: string) => {
    if (!imageIds.has(name))
      imageIds.set(
        name,
        await docker.image(name).then(
          (i) => i.id,
          () => null,
        ),
      );
    return imageIds.get(name)!;
  };
  for (const c of [...pool.idle.values()]) {
    const seen = byId.get(c.containerId);
    if (!seen?.running && !seen?.paused) await pool.drop(c, 'the container died');
    else if (c.image !== poolImage(kernelSettings, c.lang))
      await pool.drop(
        c,
        `its lang names another image now (image_prefix ${JSON.stringify(kernelSettings.imagePrefix)} or image_allow_list changed)`,
      );
    else if (c.recipe !== recipe)
      await pool.drop(c, 'the kernel settings it was made with changed (lock-down, kernel uid or publish address)');
    else {
      const id = await imageId(c.image);
      if (id === null) await pool.drop(c, `image ${c.image} is no longer on the node`);
      else if (id !== c.imageId) await pool.drop(c, `image ${c.image} changed (${c.imageId.slice(7, 19)} -> ${id.slice(7, 19)})`);
    }
  }

  if (s.readinessIntervalSec > 0) {
    const due = [...pool.idle.values()].filter((c) => !c.checking && Date.now() - c.checkedAt >= s.readinessIntervalSec * 1000);
    await Promise.all(
      due.map(async (c) => {
        c.checking = true;
        try {
          await pool.check(c, 5000);
          c.checkedAt = Date.now();
        } catch (err) {
          await pool.drop(c, `its runner failed the readiness check (${errorMessage(err)})`);
        } finally {
          c.checking = false;
        }
      }),
    );
  }

  const creatingSlots = new Set(pool.creating.keys());
  const now = Date.now();
  for (const c of listed) {
    if (c.labels[LABELS.pool] === undefined) continue;
    if (pool.idle.has(c.id) || pool.claimed.has(c.id) || creatingSlots.has(c.labels[LABELS.poolSlot] ?? '')) continue;
    const ageMs = now - (Number(c.labels[LABELS.created]) || c.createdMs);
    if (ageMs < s.zombieAllowanceSec * 1000) continue;
    log.info('removing an untracked pooled container (zombie)', {
      container: c.id.slice(0, 12),
      pool: c.labels[LABELS.pool],
      ageSec: Math.round(ageMs / 1000),
      allowanceSec: s.zombieAllowanceSec,
    });
    await docker.remove(c.id).catch((e: unknown) => log.warn('could not remove a zombie pooled container', { error: errorMessage(e) }));
    const slot = c.labels[LABELS.poolSlot] ?? '';
    if (/^[0-9a-f]+$/.test(slot))
      await removeTree(path.join(scratchRoot, '.pool', slot)).catch((e: unknown) =>
        log.warn('could not remove the home of a zombie pooled container', {
          container: c.id.slice(0, 12),
          slot,
          error: errorMessage(e),
        }),
      );
  }

  for (const id of await pool.claims.list()) {
    if (!byId.has(id) && !pool.claimed.has(id))
      await pool.claims
        .remove(id)
        .catch((e: unknown) =>
          log.warn('could not remove a claim record of a container that is gone', { container: id.slice(0, 12), error: errorMessage(e) }),
        );
  }
}
