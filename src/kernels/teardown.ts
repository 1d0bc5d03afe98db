/**
 * Removing a kernel's container so that a destroy always finishes: every
 * Docker call is bounded (a hung engine answers nothing), a removal that
 * fails or hangs is followed by a SIGKILL and another forced removal, with a
 * growing pause between rounds, and the container counts as gone only once
 * Docker says it no longer exists. What was tried is kept for the answer and
 * the log.
 */
import { DestroyPendingError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { ContainerState } from '../adapters/docker.js';
import { backoffDelay, type BackoffPolicy } from '../util/backoff.js';

/** The pause between the rounds of one removal: 100 ms doubling to 3.2 s (and never past the removal's bound). */
const REMOVE_RETRY_BACKOFF: BackoffPolicy = { baseMs: 100, maxMs: 3200, jitter: 0 };

/** The pause before each removal of a pending destroy: 500 ms doubling to a minute. */
const PENDING_DESTROY_BACKOFF: BackoffPolicy = { baseMs: 500, maxMs: 60_000, jitter: 0 };

/** The Docker calls a teardown makes. */
export interface TeardownDocker {
  remove(id: string): Promise<void>;
  kill(id: string): Promise<void>;
  inspect(id: string): Promise<ContainerState | null>;
}

/** How a teardown ended: whether the container is gone, and what each step did. */
export interface Teardown {
  gone: boolean;
  /** e.g. `remove: Docker did not answer within 1000 ms`, `kill: done`, in order. */
  steps: string[];
}

/** Resolves or rejects like `p`, or rejects after `ms` (the call goes on in the background, its outcome ignored). */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  p.catch(() => undefined); // a late failure after the timeout is nobody's to handle
  return Promise.race([
    p,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms))),
  ]).finally(() => clearTimeout(timer));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Removes a container within `boundMs`: force remove, check it is gone; on
 * failure kill it and go again, until the bound. Never throws.
 */
export async function removeContainer(docker: TeardownDocker, id: string, boundMs: number): Promise<Teardown> {
  const deadline = Date.now() + boundMs;
  const steps: string[] = [];
  const left = () => deadline - Date.now();
  const step = () => Math.max(50, Math.min(left(), Math.max(1000, boundMs / 3)));
  for (let round = 0; left() > 0; round++) {
    try {
      await within(docker.remove(id), step(), 'Docker');
      if ((await within(docker.inspect(id), step(), 'Docker')) === null) return { gone: true, steps };
      steps.push('remove: the container still exists (removal in progress)');
    } catch (err) {
      steps.push(`remove: ${errorMessage(err)}`);
    }
    if (left() <= 0) break;
    try {
      await within(docker.kill(id), step(), 'Docker');
      steps.push('kill: done');
    } catch (err) {
      steps.push(`kill: ${errorMessage(err)}`);
    }
    await sleep(Math.min(Math.max(0, left()), backoffDelay(round + 1, REMOVE_RETRY_BACKOFF)));
  }
  return { gone: false, steps };
}

/**
 * Retries {@link removeContainer} (a bound of `boundMs()` per round, the
 * pause between rounds growing to a minute, each round logged) until the
 * container is gone; rejects when `closed()` says the agent stops first
 * (the next start's re-adoption cleans up).
 */
export async function removeUntilGone(
  docker: TeardownDocker,
  id: string,
  boundMs: () => number,
  closed: () => boolean,
  log: Logger,
): Promise<void> {
  for (let round = 0; !closed(); round++) {
    await sleep(backoffDelay(round + 1, PENDING_DESTROY_BACKOFF));
    const t = await removeContainer(docker, id, boundMs());
    if (t.gone) {
      log.info('the container of a pending destroy is gone', { rounds: round + 1 });
      return;
    }
    log.warn('the container of a pending destroy is still there', { round: round + 1, tried: t.steps.slice(-2) });
  }
  throw new Error('the agent stopped before the container was gone; the next start finds it and cleans up');
}

/**
 * PendingDestroys holds the destroys that answered agent.DestroyPending and
 * go on in the background, by kernel id, until their container is gone.
 */
export class PendingDestroys<T> {
  private readonly work = new Map<string, Promise<T>>();

  has(id: string): boolean {
    return this.work.has(id);
  }

  /** Starts a background destroy; its failure is logged (the next start's re-adoption cleans up). */
  start(id: string, work: Promise<T>, log: Logger): void {
    this.work.set(id, work);
    void work
      .finally(() => this.work.delete(id))
      .catch((e: unknown) => log.error('finishing a destroy failed', { kernelId: id, error: errorMessage(e) }));
  }

  /** A destroy of a kernel whose destroy goes on: waits another bound for it, else DestroyPendingError again; null when none goes on. */
  wait(id: string, boundMs: number): Promise<T> | null {
    const w = this.work.get(id);
    if (!w) return null;
    return within(w, boundMs, 'the removal').catch(() => {
      throw new DestroyPendingError(
        `kernel ${id}: its container is still not gone after another ${boundMs / 1000} s; the agent keeps removing it and sends kernel_terminated once it is`,
      );
    });
  }
}
