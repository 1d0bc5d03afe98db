/**
 * The agent's side of the `keep` extension (docs/running-code.rst, "Kept
 * output"): a runner that keeps its runs' output numbers each run's records,
 * and the relay takes them in order, exactly once.
 */
import type { RunnerRecord } from './runner-records.js';
import type { Run } from './runs.js';

/**
 * Whether a record is the one the run expects next. One without a number
 * (a runner that does not keep) always is; one seen already is not; one after
 * a gap (records lost in a previous agent's socket) is not, and `resend` is
 * asked once per gap from the first one missing. A marker of output the
 * runner dropped (`lost`) moves the run past it.
 */
export function inSequence(run: Run, rec: RunnerRecord, resend: (from: number) => void): boolean {
  const s = rec.meta?.s;
  if (s === undefined) return true;
  run.nextSeq ??= s;
  if (rec.meta?.lost === true ? s < run.nextSeq : s !== run.nextSeq) {
    if (s > run.nextSeq && run.resendFrom !== run.nextSeq) {
      run.resendFrom = run.nextSeq;
      resend(run.nextSeq);
    }
    return false;
  }
  run.nextSeq = s + 1;
  run.lastSeq = s;
  return true;
}
