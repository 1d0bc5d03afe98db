/**
 * Frozen warm containers (`pool/freeze`, off by default): an idle pooled
 * container waits paused (`docker pause`, the cgroup freezer: its processes
 * get no CPU at all, its memory stays) once its runner has answered. A claim
 * unpauses it before anything else (a container that fails to unpause is
 * discarded and the kernel created cold: a paused container is never handed
 * out); a readiness check unpauses, pings and pauses again; a pass after the
 * setting changes pauses or unpauses the idle containers to match. A
 * container found paused at start is unpaused (and removed when it cannot
 * be); Docker stops and removes paused containers itself (a forced remove
 * kills them frozen).
 */
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { PooledContainer } from './types.js';

/** What the freezer needs of Docker. */
export interface Pauser {
  setPaused(id: string, paused: boolean): Promise<void>;
}

export class PoolFreezer {
  constructor(
    private readonly docker: Pauser,
    private readonly log: Logger,
    /** Whether `pool/freeze` is on now. */
    private readonly on: () => boolean,
  ) {}

  /** Unpauses a frozen container; throws when Docker cannot (the caller then gives the container up). */
  async thaw(c: PooledContainer): Promise<void> {
    if (!c.frozen) return;
    await this.docker.setPaused(c.containerId, false);
    c.frozen = false;
  }

  /**
   * Pauses a running idle container when `pool/freeze` is on; a failure is
   * logged and leaves it running (the next pass tries again). Callers hold
   * it out of claims meanwhile (`checking`, or not yet in the pool).
   */
  async freeze(c: PooledContainer): Promise<void> {
    if (c.frozen || !this.on()) return;
    try {
      await this.docker.setPaused(c.containerId, true);
      c.frozen = true;
    } catch (err) {
      this.log.warn('could not pause an idle pooled container; it waits running', {
        container: c.containerId.slice(0, 12),
        pool: c.key,
        error: errorMessage(err),
      });
    }
  }

  /**
   * Brings the idle containers not otherwise busy to the setting: paused when
   * it is on, running when it is off. `gone` is told of those that fail to
   * unpause (they cannot be claimed).
   */
  async settle(idle: Iterable<PooledContainer>, gone: (c: PooledContainer, why: string) => Promise<void>): Promise<void> {
    const on = this.on();
    const due = [...idle].filter((c) => !c.checking && c.frozen !== on);
    await Promise.all(
      due.map(async (c) => {
        c.checking = true;
        try {
          if (on) await this.freeze(c);
          else await this.thaw(c);
        } catch (err) {
          await gone(c, `it could not be unpaused (${errorMessage(err)})`);
        } finally {
          c.checking = false;
        }
      }),
    );
  }
}
