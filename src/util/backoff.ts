/**
 * Backoff and outage bookkeeping shared by every retry loop of the agent
 * (etcd waits, lease re-grants, watch re-creation, the Docker events stream,
 * the Redis link, warm-pool fills, container teardown): delays grow
 * exponentially from a base, stay under a bound and may carry jitter, so a
 * fleet of agents that lost a service at the same moment does not come back
 * in lock-step; an Outage makes one log line when a failure starts and one
 * when it ends, not one per retry. Each caller declares its own policy next
 * to the loop that uses it.
 */

/** BackoffPolicy bounds a retry loop: the first delay, the largest, and the jitter share (0..1; 0: none). */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  jitter: number;
}

/**
 * The delay before retry number `attempt` (1 = the first retry): base * 2^(attempt-1),
 * capped at max, then moved by up to +-jitter of itself, and never above max.
 * `random` is a number in [0, 1) (Math.random by default; tests pass their own).
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: number = Math.random()): number {
  const n = Math.max(1, Math.floor(attempt));
  const raw = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(n - 1, 30));
  const jittered = raw * (1 + policy.jitter * (2 * random - 1));
  return Math.round(Math.min(policy.maxMs, Math.max(0, jittered)));
}

/**
 * Backoff counts the failures of one retry loop and gives the delay before
 * the next try; a success resets it. For loops whose attempts are not a
 * plain `for` counter (a stream that reconnects, a fill that fails now and then).
 */
export class Backoff {
  private failures = 0;

  constructor(readonly policy: BackoffPolicy) {}

  /** Counts a failure; returns the delay before the next try. */
  next(): number {
    this.failures++;
    return backoffDelay(this.failures, this.policy);
  }

  /** Forgets the failures (the next delay is the base again). */
  reset(): void {
    this.failures = 0;
  }
}

/** Outage remembers whether a failure is under way, so that each one is said once when it starts and once when it ends. */
export class Outage {
  private since: number | null = null;

  /** Whether an outage is under way. */
  get active(): boolean {
    return this.since !== null;
  }

  /** Marks a failure; returns true only for the first one of an outage (the one to log). */
  fail(now = Date.now()): boolean {
    if (this.since !== null) return false;
    this.since = now;
    return true;
  }

  /** Marks a success; returns the outage's length in ms when one just ended (the moment to log), else null. */
  recover(now = Date.now()): number | null {
    if (this.since === null) return null;
    const ms = now - this.since;
    this.since = null;
    return ms;
  }
}
