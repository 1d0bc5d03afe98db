/**
 * Liveness watches a kernel runner while it has runs: a run with nothing
 * heard from its runner for a while gets a `status` probe. For a runner that
 * tags, a probe answered with a generation the relay has not heard say hello
 * means a restart it missed. For one that does not, a runner is alive while
 * it answers, whatever its status holds (section 4 promises no key; the 2018
 * runner sends only `started_at`): several probes without an answer mean it
 * stopped answering; a `started_at` other than the one it answered when the
 * run was sent means it restarted and lost the run; and, for a runner that
 * says `busy` and `queue`, two "I run nothing" answers in a row mean the same.
 * It decides; the relay acts.
 */
import type { Logger } from '../log.js';
import { parseStatus } from './runner-records.js';

/** A run with nothing heard from its runner for this long gets a liveness probe (`status`). */
export const PROBE_INTERVAL_MS = 5000;
/** Probes a runner that does not tag may miss in a row before its run is ended. */
const UNTAGGED_MISSES = 3;

/** What the watch needs of its relay. */
export interface LivenessTarget {
  log: Logger;
  /** Whether the relay is synchronised and open (no probes before, none after). */
  ready(): boolean;
  /** Whether the runner tags its records. */
  tagged(): boolean;
  /** The generation the relay knows. */
  generation(): string | null;
  /** Whether a run is going, and whether the oldest one has started. */
  active(): { any: boolean; headStarted: boolean };
  /** Sends a request and resolves with its answer's payload. */
  request(type: string, replyType: string, timeoutMs: number): Promise<Buffer>;
  /** A runner that does not tag lost its run: end it, and `resend` (start) or `end` the ones waiting behind it. */
  lost(line: string, queued: 'resend' | 'end'): void;
}

export class Liveness {
  private readonly timer: NodeJS.Timeout;
  private lastHeard = Date.now();
  private probing = false;
  private misses = 0;
  private idle = 0;
  /** The `started_at` a runner that does not tag answered just before its current run was sent (undefined: not known). */
  private startedAt: unknown = undefined;

  constructor(private readonly target: LivenessTarget) {
    this.timer = setInterval(() => this.probe(), PROBE_INTERVAL_MS);
    this.timer.unref();
  }

  /** The runner said something about a run (not a probe's answer): it is alive and working. */
  heard(): void {
    this.lastHeard = Date.now();
    this.idle = 0;
  }

  /** Any record came: the runner answers. */
  answered(): void {
    this.misses = 0;
  }

  /**
   * A run is about to go to a runner that does not tag: `status` is asked
   * for first, and the run's inputs go once it is answered (or the request
   * failed), so its answer names the runner that gets them and a probe can
   * tell it from one started after. Sent together, a runner that dies at
   * once on the inputs (code that kills it) could take the answer with it
   * (its I/O thread had not written it yet): the next answer, a probe's, came
   * from its successor and was taken for the run's runner, and the lost run
   * was never ended. Resolves when the inputs may go.
   */
  async sending(): Promise<void> {
    this.startedAt = undefined;
    const payload = await this.target.request('status', 'status', PROBE_INTERVAL_MS).catch(() => null); // none: the probes find out
    this.startedAt = payload ? parseStatus(payload)?.started_at : undefined;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private probe(): void {
    if (!this.target.ready() || this.probing) return;
    const { any } = this.target.active();
    if (!any) this.idle = 0;
    if (!any || Date.now() - this.lastHeard < PROBE_INTERVAL_MS) return;
    this.probing = true;
    this.target
      .request('status', 'status', PROBE_INTERVAL_MS)
      .then(
        (payload) => this.onAnswer(parseStatus(payload)),
        () => this.onMissed(),
      )
      .finally(() => (this.probing = false));
  }

  private onAnswer(st: Record<string, unknown> | null): void {
    this.misses = 0;
    if (!st || !this.target.ready()) return;
    if (this.target.tagged()) {
      // A generation we have not heard say hello: ask, and the answer takes the restart path.
      if (typeof st.generation === 'string' && st.generation !== this.target.generation())
        this.target.request('hello', 'hello', 5000).catch(() => undefined); // its answer reaches the relay as a hello record; no answer: the next probe asks again
      return;
    }
    if (st.started_at !== undefined && this.target.active().headStarted) {
      if (this.startedAt === undefined) this.startedAt = st.started_at;
      else if (!sameValue(st.started_at, this.startedAt)) {
        this.startedAt = undefined;
        this.idle = 0;
        return this.target.lost('runner lost the run: it restarted (its status names another start time)', 'resend');
      }
    }
    if (this.target.active().headStarted && st.busy === false && st.queue === 0) {
      if (++this.idle < 2) return; // twice in a row: a `finished` on its way has had time to arrive
      this.idle = 0;
      this.target.lost('runner lost the run: it says it runs nothing (it may have restarted)', 'resend');
    } else this.idle = 0;
  }

  private onMissed(): void {
    if (!this.target.ready()) return;
    this.misses++;
    if (this.misses === 1) this.target.log.warn('the kernel runner did not answer a liveness probe', { timeoutMs: PROBE_INTERVAL_MS });
    if (!this.target.tagged() && this.misses >= UNTAGGED_MISSES) {
      this.misses = 0;
      this.target.lost(`the runner did not answer ${UNTAGGED_MISSES} liveness probes`, 'end');
    }
  }
}

/** Whether two values of a status answer are the same (msgpack numbers and strings compare by value). */
function sameValue(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}
