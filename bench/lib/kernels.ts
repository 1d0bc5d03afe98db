/**
 * The kernels a figure makes through an agent, set up the same way by every
 * figure that needs many: ids of the run per round, bursts started all at
 * once, and a set of kernels held for all the rounds (made before the first,
 * destroyed after the last, also when making them fails).
 */
import { performance } from 'node:perf_hooks';
import { errorMessage } from '../../src/errors.js';
import { methods } from '../../src/rpc/methods.js';
import { KERNEL_CONFIG } from '../figures/cold-create.js';
import { inBatches, roundName } from '../harness.js';
import type { BenchAgent, BenchEnv } from './env.js';

/** `count` kernel ids of the run for one round of a figure: `<run>-<tag>-<round>-<i>`. */
export function roundKernelIds(env: BenchEnv, tag: string, round: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${env.runId}-${tag}-${roundName(round)}-${i}`);
}

/**
 * Starts `make` for every id at once; resolves with the time until all were
 * done and what each gave, after `undo` for every id (untimed; its failures
 * are ignored, an id never made included). A failed `make` fails the burst,
 * after the undo.
 */
export async function atOnce<T>(
  ids: string[],
  make: (id: string, i: number) => Promise<T>,
  undo: (id: string) => Promise<unknown>,
): Promise<{ ms: number; values: T[] }> {
  const t0 = performance.now();
  const made = await Promise.allSettled(ids.map(make));
  const ms = performance.now() - t0;
  await Promise.all(ids.map((id) => undo(id).catch(() => undefined)));
  const failed = made.find((m): m is PromiseRejectedResult => m.status === 'rejected');
  if (failed) throw failed.reason;
  return { ms, values: made.map((m) => (m as PromiseFulfilledResult<T>).value) };
}

/** Destroys kernels of an agent, `batch` at a time; a kernel that is not there (never made, already gone) is no failure. */
export function destroyKernels(agent: BenchAgent, ids: string[], batch = 10): Promise<void> {
  return inBatches(ids, batch, (id) => agent.client.callWithTimeout(120_000, methods.destroy_kernel, id).catch(() => null));
}

/** The config of a held kernel: a core and 128 MiB, so that many fit on the node. */
const HELD_CONFIG = { ...KERNEL_CONFIG, limits: { cpu_slot: 1, mem_slot: 128 } };

/**
 * Makes the kernels `ids` on an agent, `parallel` at a time. A failed create
 * fails the fill, unless `tolerate`: then no further one is started and the
 * fill resolves with the ids that were made (the largest count the node held).
 */
export async function fill(agent: BenchAgent, ids: string[], parallel: number, tolerate = false): Promise<string[]> {
  const queue = [...ids];
  const made: string[] = [];
  let failure: unknown = null;
  const worker = async () => {
    for (let id = queue.shift(); id && failure === null; id = queue.shift()) {
      try {
        await agent.client.callWithTimeout(300_000, methods.create_kernel, id, HELD_CONFIG);
        made.push(id);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  if (failure !== null && !tolerate) throw failure;
  if (failure !== null)
    console.error(`bench: the node held ${made.length} of ${ids.length} kernels; the next create failed: ${errorMessage(failure)}`);
  return made;
}

/**
 * `count` kernels `<run>-<tag>-<i>` held by an agent for all the rounds of a
 * figure, made `parallel` at a time (see {@link fill} for `tolerate`);
 * `close` destroys them. When making them fails, those made are destroyed
 * before the failure is thrown.
 */
export async function holdKernels(
  env: BenchEnv,
  /** The agent now (one a figure restarts is another object after each start). */
  agent: () => BenchAgent,
  tag: string,
  count: number,
  o: { parallel: number; tolerate?: boolean },
): Promise<{ made: string[]; close(): Promise<void> }> {
  const ids = Array.from({ length: count }, (_, i) => `${env.runId}-${tag}-${i}`);
  const close = () => destroyKernels(agent(), ids);
  try {
    return { made: await fill(agent(), ids, o.parallel, o.tolerate), close };
  } catch (err) {
    await close();
    throw err;
  }
}
