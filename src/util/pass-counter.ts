/**
 * PassCounter counts the passes of a periodic loop (the warm pool's passes,
 * the heartbeat's beats) and wakes those waiting for a number of them, so
 * that a test or a tool waits for the loop's own work instead of for time.
 */
export class PassCounter {
  private n = 0;
  private closed = false;
  private readonly waiters = new Set<{ at: number; wake: () => void }>();

  /** Passes finished so far. */
  get count(): number {
    return this.n;
  }

  /** Counts a finished pass and wakes the waits it completes. */
  passed(): void {
    this.n++;
    for (const w of this.waiters) {
      if (w.at > this.n) continue;
      this.waiters.delete(w);
      w.wake();
    }
  }

  /** Resolves once `n` more passes than now have finished; at {@link close} too (no more passes will come). */
  after(n: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((wake) => this.waiters.add({ at: this.n + n, wake }));
  }

  /** The loop stopped: every wait resolves now, and later ones at once. */
  close(): void {
    this.closed = true;
    for (const w of this.waiters) w.wake();
    this.waiters.clear();
  }
}
