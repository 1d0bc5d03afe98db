/**
 * RunBook holds the runs of one kernel relay: by run id, by tag, and in the
 * order they were sent (for a runner that does not tag, the first is the one
 * running). It starts a run's exec-timeout clock, finishes and retires runs,
 * takes over the runs an earlier agent left in the runner, and answers the
 * calls collecting a run's output, sharing one answer between them. The
 * relay decides what happened; the book keeps the runs consistent with it.
 */
import type { Logger } from '../log.js';
import { errorMessage, ParametersError } from '../errors.js';
import type { RunResult } from '../rpc/results.js';
import { Run, type RunStatus } from './runs.js';
import { payloadExitCode, payloadJson, type RunnerHello, type RunnerRecord } from './runner-records.js';

/** How far a run has come, for {@link RunBook.whenRun}. */
export type RunStage = 'started' | 'ended';

/** Runs taken over from a previous agent that nobody has asked for, kept at most. */
const MAX_UNCLAIMED = 64;

/** What the book needs of its relay. */
export interface RunBookOptions {
  log: Logger;
  /** Seconds a run may take once the runner starts it (0 = no limit). */
  execTimeoutSec(): number;
  /** A run exceeded the exec timeout: the kernel is to be destroyed. */
  onExecTimeout(): void;
  /** Files under /home/work/.output created or changed since a time (ms), for finished runs. */
  outputFiles(sinceMs: number): Promise<Array<{ name: string; size: number }>>;
  /** Whether the runner tags its records (a runner that does not may lose a run and need its inputs again). */
  tagged(): boolean;
  /** Whether calls should answer at once instead of waiting (the agent drains, or the relay closed). */
  hurry(): boolean;
  /** A runner that does not tag is driven one run at a time: this run is now the oldest unfinished one, and its inputs go now. */
  sendNext(run: Run): void;
  /** A runner that does not tag sent a `finished` without an exit code: the relay finds out whether another follows. */
  endSaid(run: Run): void;
  /** The run's output up to record `seq` was handed on: the runner may forget it (a runner that keeps output). */
  ack?(run: Run, seq: number): void;
  /** The clock (ms) of starts and ends; Date.now unless a test moves its own. */
  now?(): number;
}

export class RunBook {
  private readonly runs = new Map<string, Run>();
  private readonly byTag = new Map<string, Run>();
  /** Runs sent and not finished, in the order they were sent (or sent again). */
  private readonly order: Run[] = [];
  /** When the last run ended (ms): the next one's files are those changed after it. */
  private lastRetiredAt = 0;
  /** Those waiting for a run to reach a stage (see {@link whenRun}). */
  private readonly stageWaiters = new Set<{ runId: string; stage: RunStage; wake: () => void }>();

  constructor(
    private readonly options: RunBookOptions,
    inherited: Run[] = [],
  ) {
    for (const run of inherited) this.runs.set(run.id, run);
  }

  private now(): number {
    return this.options.now ? this.options.now() : Date.now();
  }

  get(id: string): Run | undefined {
    return this.runs.get(id);
  }

  withTag(tag: string): Run | undefined {
    return this.byTag.get(tag);
  }

  /** The oldest run not finished: the one a runner that does not tag is running. */
  get head(): Run | undefined {
    return this.order[0];
  }

  /** The runs not finished, oldest first (a copy). */
  pending(): Run[] {
    return [...this.order];
  }

  /** Every run held (a copy). */
  all(): Run[] {
    return [...this.runs.values()];
  }

  /**
   * Adds a run: a runner that tags has been sent it; one that does not is
   * sent it now if no other run is going (it starts at once), else when the
   * runs before it have ended (see {@link retire}).
   */
  add(run: Run): void {
    this.runs.set(run.id, run);
    if (run.tag !== null) this.byTag.set(run.tag, run);
    this.order.push(run);
    if (!this.options.tagged() && this.order.length === 1) this.startNext(run);
  }

  private startNext(run: Run): void {
    this.begin(run);
    this.options.sendNext(run);
  }

  /** Moves a run to the end of the order (it was sent again, after the others). */
  requeue(run: Run): void {
    const i = this.order.indexOf(run);
    if (i >= 0) this.order.splice(i, 1);
    this.order.push(run);
  }

  /**
   * The run is now the one the runner works on: its clock starts. Its output
   * files are those changed since it was sent or since the agent heard the
   * run before it end, whichever is later (changedOutputFiles allows 5 ms
   * for the file system's clock): the runner starts a job before the agent
   * hears that it did, so a quick run's file may be older than that.
   */
  begin(run: Run): void {
    run.started = true;
    run.startedAt = this.now();
    run.filesSince = Math.max(run.createdAt, this.lastRetiredAt);
    if (this.options.tagged()) run.inputs = []; // a runner that does not tag may lose it and need it again
    this.reached(run.id, 'started');
    const limit = this.options.execTimeoutSec();
    if (limit <= 0) return;
    run.timer = setTimeout(() => {
      this.options.log.warn('a run exceeded the exec timeout; destroying the kernel', { runId: run.id, timeoutSec: limit });
      run.settle({ status: 'exec-timeout', exitCode: null, options: null });
      this.retire(run);
      this.options.onExecTimeout();
    }, limit * 1000);
  }

  /** The runner said the run finished. */
  finish(run: Run, exitCode: number | null): void {
    run.output.finish();
    run.settle({ status: 'finished', exitCode, options: null });
    this.retire(run);
  }

  /**
   * Gives a record of the runner to the run the relay routed it to: text,
   * media and html go to its output (text of a run nobody collects is
   * counted, not kept, once its output is full), waiting-input and
   * build-finished are statuses, finished ends it.
   */
  deliver(run: Run, rec: RunnerRecord): void {
    switch (rec.type) {
      case 'stdout':
      case 'stderr':
        if (run.unclaimed && run.output.full) run.droppedBytes += rec.payload.length;
        else run.output.addText(rec.type, rec.payload);
        break;
      case 'media':
        run.output.addMedia(rec.payload);
        break;
      case 'html':
        run.output.addHtml(rec.payload);
        break;
      case 'waiting-input': {
        const o = payloadJson(rec.payload);
        run.settle({ status: 'waiting-input', exitCode: null, options: o && !Array.isArray(o) ? o : { is_password: false } });
        break;
      }
      case 'build-finished':
        run.settle({ status: 'build-finished', exitCode: payloadExitCode(rec.payload), options: null });
        break;
      case 'finished': {
        const code = payloadExitCode(rec.payload);
        // The 2018 shell runner ends a query with `{"upload_output_files": false}`, then `{"exitCode": n}`: one end.
        if (code === null && !run.endSaid && !this.options.tagged()) {
          run.endSaid = true;
          this.options.endSaid(run);
        } else this.finish(run, code);
        break;
      }
    }
  }

  /** Ends a run with a status of the relay's and its line on stderr. */
  end(run: Run, exitCode: number, line: string): void {
    run.end(exitCode, line);
    this.retire(run);
  }

  /** Takes a run out of the order; for a runner that does not tag, the next one is sent and starts its exec timeout. */
  retire(run: Run): void {
    this.lastRetiredAt = this.now();
    run.done = true;
    run.inputs = [];
    run.output.release();
    if (run.timer) clearTimeout(run.timer);
    if (run.tag !== null && this.byTag.get(run.tag) === run) this.byTag.delete(run.tag);
    const i = this.order.indexOf(run);
    if (i >= 0) this.order.splice(i, 1);
    this.reached(run.id, 'ended');
    if (!this.options.tagged() && i === 0 && this.order[0]) this.startNext(this.order[0]);
  }

  /**
   * Resolves once the run `runId` has reached `stage` — `started`: the
   * runner began it (a destroy now says `terminated`, not `not started`);
   * `ended`: it finished or the relay ended it — at once if it already has,
   * and at {@link releaseWaiters}. It is how a test or a tool waits on a
   * run's progress instead of for time.
   */
  whenRun(runId: string, stage: RunStage): Promise<void> {
    const run = this.runs.get(runId);
    if (run && (run.done || (stage === 'started' && run.started))) return Promise.resolve();
    return new Promise((wake) => this.stageWaiters.add({ runId, stage, wake }));
  }

  /** Wakes every {@link whenRun} wait (the relay closed: no run of it moves any more). */
  releaseWaiters(): void {
    for (const w of this.stageWaiters) w.wake();
    this.stageWaiters.clear();
  }

  private reached(runId: string, stage: RunStage): void {
    for (const w of this.stageWaiters) {
      // A run that ends has passed `started` too, even one the runner never began.
      if (w.runId !== runId || (w.stage === 'ended' && stage !== 'ended')) continue;
      this.stageWaiters.delete(w);
      w.wake();
    }
  }

  /** Drops a run from the book (its last status was returned, or it is replaced). */
  forget(run: Run): void {
    if (this.runs.get(run.id) === run) this.runs.delete(run.id);
    if (run.tag !== null && this.byTag.get(run.tag) === run) this.byTag.delete(run.tag);
  }

  /** Wakes every call waiting on a run (they answer with what the run holds). */
  wakeAll(): void {
    for (const run of this.runs.values()) run.wake();
  }

  /**
   * Ends every run not finished with a reason (exit code -1, `terminated:`,
   * or `not started:` for runs the runner never began) and returns the runs
   * whose ending was not collected yet, for a successor relay to answer.
   */
  endAll(reason: string): Run[] {
    // Last first: a run that ends sends no one behind it (a runner that does not tag gets one run at a time).
    for (const run of [...this.order].reverse()) this.end(run, -1, run.started ? `terminated: ${reason}` : `not started: ${reason}`);
    for (const run of this.runs.values()) {
      if (!run.done) this.end(run, -1, run.started ? `terminated: ${reason}` : `not started: ${reason}`);
      run.output.release();
    }
    return this.all().filter((r) => r.done && r.statuses.length > 0);
  }

  /**
   * After an agent restart: the runs the runner holds (running, queued, just
   * finished) become runs of this book. Returns the tag of the one running.
   */
  takeOver(h: RunnerHello): string | null {
    let running: string | null = null;
    const holds = [...(h.current ? [h.current] : []), ...h.queue];
    holds.forEach((ref, i) => {
      if (!ref.run || this.runs.has(ref.run) || this.byTag.has(ref.t)) return;
      const run = new Run(ref.run, ref.t, [], true);
      if (h.keep) run.nextSeq = ref.acked + 1;
      this.add(run);
      if (i === 0 && h.current) {
        running = ref.t;
        this.begin(run);
      }
    });
    for (const ref of h.recent) {
      if (!ref.run || this.runs.has(ref.run)) continue;
      // Finished while no agent listened: its end is known; output still on its way reaches it by tag.
      const run = new Run(ref.run, ref.t, [], true);
      run.started = true;
      this.runs.set(run.id, run);
      this.byTag.set(ref.t, run);
      if (h.keep) {
        // The runner kept its output and end: they come again from what the previous agent acknowledged.
        run.nextSeq = ref.acked + 1;
        continue;
      }
      run.settle({ status: 'finished', exitCode: ref.exitCode, options: null });
      run.done = true;
    }
    const unclaimed = this.all().filter((r) => r.unclaimed);
    for (const r of unclaimed.slice(0, Math.max(0, unclaimed.length - MAX_UNCLAIMED))) this.forget(r);
    this.options.log.info('took over the runs the kernel runner holds after an agent restart', {
      running: h.current?.run ?? null,
      queued: h.queue.length,
      finished: h.recent.length,
    });
    return running;
  }

  /** Answers a call for a run's output: at its next status, or after the flush timeout (`continued`). */
  collect(run: Run, apiVersion: number, flushTimeoutMs: number): Promise<RunResult> {
    if (run.collecting) {
      // Several callers waiting on one run all get the same answer.
      if (run.collecting.apiVersion === apiVersion) return run.collecting.promise;
      throw new ParametersError(
        `run ${run.id} already has a call waiting on it with api_version ${run.collecting.apiVersion}; wait for it`,
      );
    }
    const promise = this.collectNow(run, apiVersion, flushTimeoutMs).finally(() => (run.collecting = null));
    run.collecting = { apiVersion, promise };
    return promise;
  }

  private async collectNow(run: Run, apiVersion: number, flushTimeoutMs: number): Promise<RunResult> {
    if (!run.ready && !this.options.hurry()) await run.sleep(flushTimeoutMs);
    const next: RunStatus = run.statuses.shift() ?? { status: 'continued', exitCode: null, options: null };
    if (run.done && run.statuses.length === 0) this.forget(run);
    // Acknowledged only when no status waits: the runner keeps the records behind one until a reply gives it.
    if (run.statuses.length === 0 && run.lastSeq > run.ackedSeq) {
      run.ackedSeq = run.lastSeq;
      this.options.ack?.(run, run.lastSeq);
    }
    const files =
      next.status === 'finished' && run.startedAt > 0
        ? await this.options.outputFiles(run.filesSince).catch((err: unknown) => {
            this.options.log.warn('could not list the output files of a run; it answers with none', {
              runId: run.id,
              error: errorMessage(err),
            });
            return [];
          })
        : [];
    return { runId: run.id, status: next.status, exitCode: next.exitCode, options: next.options, files, ...run.output.take(apiVersion) };
  }
}
