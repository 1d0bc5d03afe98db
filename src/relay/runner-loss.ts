/**
 * What a lost runner means for the runs of a kernel relay
 * (src/relay/kernel-relay.ts): a runner that tags and restarted (a new
 * generation), and a runner that does not tag that lost its run (liveness,
 * src/relay/liveness.ts, found it restarted or silent). The relay tells what
 * happened; these settle the runs it holds.
 */
import { errorMessage, KernelUnresponsiveError } from '../errors.js';
import type { OomWatch } from './oom-watch.js';
import type { KernelRelayOptions } from './relay-options.js';
import type { RequestBook } from './requests.js';
import type { RunBook } from './run-book.js';
import type { Run } from './runs.js';
import { describeRunnerEnd, parseHello, type RunnerHello } from './runner-records.js';

/** The parts of a relay a loss settles. */
export interface LossTarget {
  book: RunBook;
  requests: RequestBook;
  oom: OomWatch;
  options(): KernelRelayOptions;
  closed(): boolean;
  /** The generation the relay knows now. */
  generation(): string | null;
  /** Sends a run's inputs again. */
  sendInputs(run: Run): void;
}

/**
 * A new runner generation: the old runner is gone. The relay asks the new
 * one what it holds: the run the old one was running (`said`: the one it said
 * it started, else the oldest unfinished run the new one does not hold) ends
 * with how it died; the other runs the new one lacks were lost in the old
 * one's queue and are sent again; requests it owed fail.
 */
export async function runnerRestarted(t: LossTarget, h: RunnerHello, said: Run | undefined): Promise<void> {
  const { book, requests } = t;
  const options = t.options();
  const sent = book.pending();
  requests.failAll(() => new KernelUnresponsiveError('the kernel runner restarted before it answered; ask again'));
  const end = describeRunnerEnd(h.previousStatus, { killed: await t.oom.killedSince(), limitMiB: options.memLimitMiB ?? 0 });
  options.onRunnerRestart?.(end.line);
  let has: Set<string> | null = null;
  if (sent.length > 0 && !t.closed()) {
    try {
      const again = parseHello(await requests.request('hello', '', 'hello', 5000, () => new KernelUnresponsiveError('no hello')));
      if (again?.generation !== t.generation()) return; // restarted again meanwhile: that restart settles these runs
      has = new Set([...(again.current ? [again.current] : []), ...again.queue, ...again.recent].map((j) => j.t));
    } catch (err) {
      options.log.warn('could not ask the restarted runner what it holds; runs queued before the restart are not sent again', {
        error: errorMessage(err),
      });
    }
  }
  const held = (r: Run) => has !== null && has.has(r.tag ?? '');
  const dead = said && !said.done ? said : sent.find((r) => !r.done && !held(r));
  options.log.warn('the kernel runner restarted', {
    reason: end.line,
    endedRun: dead?.id ?? null,
    generation: h.generation,
    pid: h.pid,
  });
  if (dead) book.end(dead, end.exitCode, `${end.line}; the kernel's state (variables, imports) was lost`);
  if (has === null) return;
  for (const run of sent) {
    if (run.done || run.started || held(run)) continue;
    book.requeue(run);
    t.sendInputs(run);
  }
}

/**
 * A runner that does not tag lost its run (it restarted, or it stopped
 * answering). The runs behind it were not sent yet (one run at a time): with
 * `resend` the next one is sent now, with `end` they end unstarted.
 */
export function lostRunner(t: LossTarget, line: string, queued: 'resend' | 'end'): void {
  const [head, ...rest] = t.book.pending();
  if (!head) return;
  const options = t.options();
  options.log.warn('the kernel runner lost the run it was running', { reason: line, runId: head.id });
  options.onRunnerRestart?.(line);
  if (queued === 'end') for (const run of rest.reverse()) t.book.end(run, -1, `not started: ${line}`);
  t.book.end(head, -1, `${line}; the kernel's state may have been lost`); // sends the next one, if any
}
