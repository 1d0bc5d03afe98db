/**
 * KernelRelay is the agent's side of one kernel runner (PROTOCOL.md section
 * 4): a PUSH to its port 2000 and a PULL from 2001, opened on first use and
 * closed with the kernel. It keeps the runs of the kernel in the order they
 * were sent (the runner serves them in that order, so output belongs to the
 * oldest unfinished run), answers `execute` with what arrived within the
 * flush timeout, and enforces the exec timeout of each run.
 */
import { randomUUID } from 'node:crypto';
import * as zmq from 'zeromq';
import type { Logger } from '../log.js';
import { errorMessage, KernelUnresponsiveError, ParametersError, RunNotFoundError } from '../errors.js';
import type { RunResult } from '../rpc/methods.js';
import { SendQueue } from '../wire/send-queue.js';
import { RunOutput } from './output.js';

type Status = RunResult['status'];

interface Run {
  id: string;
  output: RunOutput;
  /** Statuses that arrived and were not yet returned, oldest first. */
  statuses: Array<{ status: Status; exitCode: number | null; options: Record<string, unknown> | null }>;
  done: boolean;
  /** When the runner started this run (it became the oldest unfinished one). */
  startedAt: number;
  wake: (() => void) | null;
  timer: NodeJS.Timeout | null;
}

/** What `execute` asks of the relay, its arguments already checked. */
export interface ExecuteRequest {
  apiVersion: number;
  runId: string | null;
  mode: 'query' | 'batch' | 'input' | 'continue';
  code: string;
  opts: Record<string, unknown>;
  flushTimeoutMs: number;
}

/** Options of {@link KernelRelay}. */
export interface KernelRelayOptions {
  host: string;
  replInPort: number;
  replOutPort: number;
  log: Logger;
  /** Seconds a run may take once the runner starts it (0 = no limit). */
  execTimeoutSec: number;
  /** Called once when a run exceeds the exec timeout; the kernel is then destroyed. */
  onExecTimeout(): void;
  /** Files under /home/work/.output created or changed since a time (ms), for finished runs. */
  outputFiles(sinceMs: number): Promise<Array<{ name: string; size: number }>>;
}

export class KernelRelay {
  private readonly push = new zmq.Push({ linger: 0, sendHighWaterMark: 1000 });
  // A small receive queue: records are up to 64 KiB, so while a run is held back (see RunOutput) libzmq keeps at most ~4 MiB of it here.
  private readonly pull = new zmq.Pull({ linger: 0, receiveHighWaterMark: 64 });
  private readonly queue: SendQueue;
  private readonly runs = new Map<string, Run>();
  /** Runs sent to the runner and not finished; the first is the one running. */
  private readonly order: Run[] = [];
  private completions: Array<(list: string[]) => void> = [];

  constructor(private o: KernelRelayOptions) {
    const host = o.host.includes(':') ? `[${o.host}]` : o.host;
    this.push.connect(`tcp://${host}:${o.replInPort}`);
    this.pull.connect(`tcp://${host}:${o.replOutPort}`);
    this.queue = new SendQueue(this.push, (err) => this.o.log.warn('could not send to the kernel runner', { error: errorMessage(err) }));
    void this.readLoop();
  }

  /**
   * Hands the relay to a new owner — a warm-pool claim makes the pool's
   * relay the kernel's, so the claim pays no connect: from now on its log,
   * exec timeout and output files. The connection stays.
   */
  rebind(o: Omit<KernelRelayOptions, 'host' | 'replInPort' | 'replOutPort'>): void {
    this.o = { ...this.o, ...o };
  }

  /** execute: starts or resumes a run and returns its output so far. */
  async execute(req: ExecuteRequest): Promise<RunResult> {
    let run: Run;
    if (req.mode === 'continue' || req.mode === 'input') {
      run = this.runs.get(req.runId ?? '') ?? this.fail(new RunNotFoundError(`no run ${req.runId} on this kernel; start one with mode query or batch`));
      if (req.mode === 'input') this.send('input', req.code);
    } else {
      const id = req.runId ?? randomUUID();
      if (this.runs.has(id)) throw new ParametersError(`run ${id} is still going; call again with mode continue`);
      run = { id, output: new RunOutput(), statuses: [], done: false, wake: null, timer: null, startedAt: 0 };
      this.runs.set(id, run);
      this.order.push(run);
      if (this.order.length === 1) this.begin(run);
      if (req.mode === 'query') this.send('code', req.code);
      else this.sendBatch(run, req.opts);
    }
    return this.collect(run, req.apiVersion, req.flushTimeoutMs);
  }

  /** Runs query-mode code to its end (driving `continue`) and returns the last result; for the agent's own commands. */
  async runToEnd(code: string, timeoutMs = 30_000): Promise<RunResult> {
    const deadline = Date.now() + timeoutMs;
    let r = await this.execute({ apiVersion: 2, runId: null, mode: 'query', code, opts: {}, flushTimeoutMs: 1000 });
    while (r.status === 'continued') {
      if (Date.now() > deadline) throw new KernelUnresponsiveError(`the kernel runner did not finish ${JSON.stringify(code)} within ${timeoutMs / 1000} s`);
      r = await this.execute({ apiVersion: 2, runId: r.runId, mode: 'continue', code: '', opts: {}, flushTimeoutMs: 1000 });
    }
    return r;
  }

  /** Resolves once the runner answers `%ping` (it binds its ports a moment after the container starts). */
  async ping(): Promise<void> {
    await this.runToEnd('%ping');
  }

  /** interrupt_kernel: SIGINT (KeyboardInterrupt) to what the runner is running. */
  interrupt(): void {
    this.send('interrupt', '');
  }

  /** get_completions: asks the runner and waits (5 s at most) for its answer. */
  complete(text: string, opts: Record<string, unknown>): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.completions = this.completions.filter((w) => w !== waiter);
        reject(new KernelUnresponsiveError('the kernel did not answer the completion request within 5 s; it may be busy'));
      }, 5000);
      const waiter = (list: string[]) => {
        clearTimeout(timer);
        resolve(list);
      };
      this.completions.push(waiter);
      this.send('complete', JSON.stringify({ ...opts, code: text }));
    });
  }

  /** Closes the sockets and ends every run waiting for output. */
  close(): void {
    for (const run of this.runs.values()) {
      this.settle(run, { status: 'finished', exitCode: null, options: null });
      run.output.release();
    }
    this.push.close();
    this.pull.close();
  }

  private fail(err: Error): never {
    throw err;
  }

  private send(type: string, payload: string): void {
    this.queue.push([type, Buffer.from(payload, 'utf8')]);
  }

  private sendBatch(run: Run, opts: Record<string, unknown>): void {
    // `*` would be the image's default command; this image declares none, so it is skipped like an empty one.
    const cmd = (v: unknown) => (typeof v === 'string' && v !== '' && v !== '*' ? v : null);
    const build = cmd(opts.build);
    const exec = cmd(opts.exec);
    if (build) this.send('build', build);
    if (exec) this.send('exec', exec);
    if (!build && !exec) this.finishRun(run, 0);
  }

  private async collect(run: Run, apiVersion: number, flushTimeoutMs: number): Promise<RunResult> {
    if (run.statuses.length === 0 && !run.done && !run.output.full) { // full: answer now, the relay waits for this reply
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, flushTimeoutMs);
        run.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      run.wake = null;
    }
    const next = run.statuses.shift() ?? { status: 'continued' as Status, exitCode: null, options: null };
    if (run.done && run.statuses.length === 0) this.runs.delete(run.id);
    const files = next.status === 'finished' ? await this.o.outputFiles(run.startedAt).catch(() => []) : [];
    return { runId: run.id, status: next.status, exitCode: next.exitCode, options: next.options, files, ...run.output.take(apiVersion) };
  }

  private current(): Run | undefined {
    return this.order[0];
  }

  private async readLoop(): Promise<void> {
    try {
      for await (const [typeFrame, payload = Buffer.alloc(0)] of this.pull) {
        const type = typeFrame?.toString('utf8');
        const run = this.current();
        switch (type) {
          case 'stdout':
          case 'stderr':
            run?.output.addText(type, payload);
            break;
          case 'media':
            run?.output.addMedia(payload);
            break;
          case 'html':
            run?.output.addHtml(payload);
            break;
          case 'waiting-input':
            if (run) {
              const o = this.json(payload);
              this.settle(run, { status: 'waiting-input', exitCode: null, options: o && !Array.isArray(o) ? o : { is_password: false } });
            }
            break;
          case 'build-finished':
            if (run) this.settle(run, { status: 'build-finished', exitCode: this.exitCode(payload), options: null });
            break;
          case 'finished':
            if (run) this.finishRun(run, this.exitCode(payload));
            break;
          case 'completion': {
            const list = this.json(payload);
            this.completions.shift()?.(Array.isArray(list) ? list.filter((x): x is string => typeof x === 'string') : []);
            break;
          }
          default:
            break; // a runner may send more than we know
        }
        // Back-pressure: a run holding as much output as it may is not read further until a reply takes it,
        // and a call waiting on it answers now (continued) rather than at its flush timeout.
        const holding = this.current();
        if (holding?.output.full) {
          holding.wake?.();
          await holding.output.waitForRoom();
        }
      }
    } catch {
      // closed
    }
  }

  private finishRun(run: Run, exitCode: number | null): void {
    run.output.finish();
    this.settle(run, { status: 'finished', exitCode, options: null });
    this.retire(run);
  }

  /** Takes a run out of the order; the next one starts its exec timeout. */
  private retire(run: Run): void {
    run.done = true;
    run.output.release();
    if (run.timer) clearTimeout(run.timer);
    const i = this.order.indexOf(run);
    if (i >= 0) this.order.splice(i, 1);
    if (i === 0 && this.order[0]) this.begin(this.order[0]);
  }

  private settle(run: Run, s: Run['statuses'][number]): void {
    run.statuses.push(s);
    run.wake?.();
  }

  /** The run is now the one the runner works on: its clock starts. */
  private begin(run: Run): void {
    run.startedAt = Date.now();
    if (this.o.execTimeoutSec <= 0) return;
    run.timer = setTimeout(() => {
      this.o.log.warn('a run exceeded the exec timeout; destroying the kernel', { runId: run.id, timeoutSec: this.o.execTimeoutSec });
      this.settle(run, { status: 'exec-timeout', exitCode: null, options: null });
      this.retire(run);
      this.o.onExecTimeout();
    }, this.o.execTimeoutSec * 1000);
  }

  private json(payload: Buffer): Record<string, unknown> | unknown[] | null {
    try {
      return JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
    } catch {
      return null;
    }
  }

  private exitCode(payload: Buffer): number | null {
    const v = this.json(payload) as { exitCode?: unknown } | null;
    return v && typeof v.exitCode === 'number' ? v.exitCode : null;
  }
}
