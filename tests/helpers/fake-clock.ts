/**
 * FakeClock is a clock that a test moves by hand: timers set through it fire
 * when {@link FakeClock.advance} passes their time, not when the wall clock
 * does, so a test of idle or interval timing neither waits nor depends on
 * the machine's speed. Its `setTimeout` has the shape of Node's timer
 * handle as far as the agent uses it (`refresh`, `unref`).
 */
export class FakeClock {
  private at = 0;
  private readonly timers = new Set<{ due: number; ms: number; fn: () => void }>();

  /** The clock's time (ms since it was made). */
  now = (): number => this.at;

  /** Calls `fn` once the clock has been advanced by `ms`; `refresh()` starts the wait again from now. */
  setTimeout = (fn: () => void, ms: number) => {
    const timer = { due: this.at + ms, ms, fn };
    this.timers.add(timer);
    const handle = {
      refresh: () => ((timer.due = this.at + timer.ms), this.timers.add(timer), handle),
      unref: () => handle,
    };
    return handle;
  };

  /** Timers waiting now. */
  get pending(): number {
    return this.timers.size;
  }

  /** Moves the clock forward by `ms`, firing the timers that fall due on the way, earliest first. */
  advance(ms: number): void {
    const end = this.at + ms;
    for (;;) {
      const next = [...this.timers].filter((t) => t.due <= end).sort((a, b) => a.due - b.due)[0];
      if (!next) break;
      this.at = next.due;
      this.timers.delete(next);
      next.fn();
    }
    this.at = end;
  }
}
