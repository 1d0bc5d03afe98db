/**
 * Run is one run of a kernel as the relay keeps it: its output since the last
 * reply, the statuses not yet returned, whether the runner has started it,
 * the inputs that start it (kept until it starts, so that a runner that never
 * got them can be sent them again), and the calls waiting on it, who share
 * one answer.
 */
import type { RunResult } from '../rpc/results.js';
import { RunOutput } from './output.js';

export type Status = RunResult['status'];

/** A status the runner (or the relay) gave a run, waiting to be returned. */
export interface RunStatus {
  status: Status;
  exitCode: number | null;
  options: Record<string, unknown> | null;
}

export class Run {
  readonly output = new RunOutput();
  /** Statuses that arrived and were not yet returned, oldest first. */
  readonly statuses: RunStatus[] = [];
  done = false;
  /** The runner began it (a `started` record; for a runner that does not tag, it became the oldest unfinished run). */
  started = false;
  /** When it started (ms, as the agent heard it), for the exec timeout. */
  startedAt = 0;
  /** The time (ms) from which files changed under `.output` are this run's (see RunBook.begin). */
  filesSince = 0;
  /** When the relay made it, just before its inputs were sent. */
  readonly createdAt = Date.now();
  timer: NodeJS.Timeout | null = null;
  /** The call collecting its output now; a second call for the run shares its answer. */
  collecting: { apiVersion: number; promise: Promise<RunResult> } | null = null;
  /** A runner that does not tag sent a `finished` without an exit code: the next `finished` (if one follows) is the same end. */
  endSaid = false;
  /** Output bytes dropped because nobody collects the run (a run taken over from a previous agent). */
  droppedBytes = 0;
  /** The number of the record expected next from a runner that keeps output (null: not numbered yet). */
  nextSeq: number | null = null;
  /** The number of the last record given to this run, and of the last one acknowledged to the runner. */
  lastSeq = 0;
  ackedSeq = 0;
  /** The number a resend was last asked from (one ask per gap). */
  resendFrom: number | null = null;
  private readonly wakers = new Set<() => void>();

  constructor(
    readonly id: string,
    /** The tag its inputs carry (null for a runner that does not tag). */
    readonly tag: string | null,
    /** The records that start it: [type, payload]; cleared once it starts. */
    public inputs: Array<[string, string]>,
    /** Taken over from the runner after an agent restart: nobody has asked for it yet. */
    public unclaimed = false,
  ) {}

  /** Adds a status and wakes the calls waiting. */
  settle(s: RunStatus): void {
    this.statuses.push(s);
    this.wake();
  }

  /** Wakes the calls waiting on the run (they answer with what it holds). */
  wake(): void {
    for (const w of [...this.wakers]) w();
  }

  /** Resolves after `ms`, or sooner when woken. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.wakers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.wakers.add(done);
    });
  }

  /** Whether a reply could be given at once. */
  get ready(): boolean {
    return this.statuses.length > 0 || this.done || this.output.full;
  }

  /** Adds a line of the relay's own to the run's stderr (why it ended, or never started). */
  note(line: string): void {
    this.output.addText('stderr', Buffer.from(`${line}\n`, 'utf8'));
  }

  /** Ends the run with a status of the relay's, its line on stderr first. */
  end(exitCode: number, line: string): void {
    this.output.finish();
    this.note(line);
    this.settle({ status: 'finished', exitCode, options: null });
  }
}
