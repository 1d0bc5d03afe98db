/**
 * KernelRelay is the agent's side of one kernel runner (docs/wire-contract.rst,
 * "Kernel runner ports": a PUSH to its port 2000 and a PULL from 2001), opened on first use and closed with the kernel: its connection
 * ({@link RunnerLink}: sockets, read loop, synchronisation) and the routing
 * of what the runner sends to runs and requests (its options in src/relay/relay-options.ts). It answers `execute` with what a run printed within
 * the flush timeout, enforces the exec timeout, and makes sure every result
 * belongs to its run.
 *
 * The link synchronises with the runner first (`hello`, and `status` for a
 * runner that does not know hello), and sends nothing else until it has.
 * A runner that answers hello tags: each input carries a tag (a third
 * frame), every record the runner sends carries its generation and the tag
 * of the job or request it belongs to, so output goes to the run that
 * printed it, answers to the request that asked, and records of a runner
 * that has died, of a run that has ended, or of a previous agent's runs
 * reach no one else. When the generation changes (the runner died and its
 * entrypoint started another), the run it was running ends with the way it
 * died, and runs it had not started go to its successor. A runner that does
 * not tag gets section 4 as it is: one run at a time (the next run's inputs
 * go when the previous one has finished, so a runner that answers a run
 * twice, or never, can at worst affect that run), its output to the run
 * going, one request of a kind at a time, and liveness probes that end a run
 * its runner has lost.
 */
import { randomUUID } from 'node:crypto';
import { errorMessage, InternalError, KernelUnresponsiveError, ParametersError, RunLostError, RunNotFoundError } from '../errors.js';
import type { RunResult } from '../rpc/results.js';
import { RequestBook } from './requests.js';
import { Liveness } from './liveness.js';
import { OomWatch } from './oom-watch.js';
import { RunBook, type RunStage } from './run-book.js';
import { Run } from './runs.js';
import { inSequence } from './kept-output.js';
import type { ExecuteRequest, KernelRelayOptions } from './relay-options.js';
import { RunnerLink, type InputMeta, type LinkMode } from './runner-link.js';
import { lostRunner, runnerRestarted, type LossTarget } from './runner-loss.js';
import { batchInputs, completionRequest, parseHello, payloadJson, type RunnerHello, type RunnerRecord } from './runner-records.js';

export class KernelRelay {
  private readonly link: RunnerLink;
  private readonly requests: RequestBook;
  private generation: string | null = null;
  /** The tag of the job the runner said it started last and has not finished. */
  private runningTag: string | null = null;
  private readonly book: RunBook;
  private readonly liveness: Liveness;
  private readonly oom: OomWatch;
  /** What a loss of the runner settles (src/relay/runner-loss.ts). */
  private readonly loss: LossTarget;
  private closed = false;
  private draining = false;
  /** Set when the link gave up after read failures: calls fail at once with it. */
  private broken: string | null = null;
  /** Records given to no one: from a runner that died, late output, or output of runs that are no longer held. */
  dropped = 0;
  /** End records (`finished`, `build-finished`) that came for no run going; the first is logged. */
  strayEnds = 0;
  /** The runner keeps its runs' output until acknowledged (its hello said `keep`). */
  private keeps = false;

  constructor(private options: KernelRelayOptions) {
    this.requests = new RequestBook({
      tagged: () => this.mode === 'tagged',
      newTag: () => this.link.newTag(),
      send: (type, payload, tag) => this.send(type, payload, tag === null ? null : { t: tag }),
    });
    this.book = new RunBook(
      {
        log: options.log,
        execTimeoutSec: () => this.options.execTimeoutSec,
        onExecTimeout: () => this.options.onExecTimeout(),
        outputFiles: (since) => this.options.outputFiles(since),
        tagged: () => this.mode === 'tagged',
        hurry: () => this.draining || this.closed,
        sendNext: (run) =>
          // once the link knows whether the runner tags; one that does not is asked its status first (Liveness.sending)
          void this.link.whenSynced().then(async () => {
            if (this.closed || run.done) return;
            if (this.mode === 'untagged') await this.liveness.sending();
            if (!this.closed && !run.done) this.sendInputs(run);
          }),
        endSaid: (run) => this.confirmEnd(run),
        ack: (run, seq) => this.keepRequest(run, 'ack', { s: seq }),
      },
      options.inherited,
    );
    this.oom = new OomWatch({ oomKills: () => this.options.oomKills?.() ?? null, log: () => this.options.log });
    this.loss = {
      book: this.book,
      requests: this.requests,
      oom: this.oom,
      options: () => this.options,
      closed: () => this.closed,
      generation: () => this.generation,
      sendInputs: (run) => this.sendInputs(run),
    };
    this.liveness = new Liveness({
      log: options.log,
      ready: () => this.mode !== 'pending' && !this.closed,
      tagged: () => this.mode === 'tagged',
      generation: () => this.generation,
      active: () => ({ any: this.book.head !== undefined, headStarted: this.book.head?.started === true }),
      request: (type, replyType, timeoutMs) =>
        this.requests.request(type, '', replyType, timeoutMs, () => new KernelUnresponsiveError(`no ${replyType}`)),
      lost: (line, queued) => lostRunner(this.loss, line, queued),
    });
    this.link = new RunnerLink(
      { host: options.host, replInPort: options.replInPort, replOutPort: options.replOutPort, log: () => this.options.log },
      {
        answered: () => this.liveness.answered(),
        synced: (mode, hello) => this.synced(mode, hello),
        record: (rec, kept) => this.onRecord(rec, kept),
        failed: (err, final) => this.failed(err, final),
        cut: (line) => this.cut(line),
      },
    );
  }

  private get mode(): LinkMode {
    return this.link.mode;
  }

  /**
   * Hands the relay to a new owner — a warm-pool claim makes the pool's
   * relay the kernel's, so the claim pays no connect: from now on its log,
   * exec timeout, output files and runner callbacks. The connection stays.
   */
  rebind(o: Omit<KernelRelayOptions, 'host' | 'replInPort' | 'replOutPort'>): void {
    this.options = { ...this.options, ...o };
    this.oom.rebase();
  }

  /** Resolves once a run reached a stage (see {@link RunBook.whenRun}); for tests and tools that wait on a run, not on time. */
  whenRun(runId: string, stage: RunStage): Promise<void> {
    return this.closed ? Promise.resolve() : this.book.whenRun(runId, stage);
  }

  /** Whether the runner tags its records ('pending' until the relay has synchronised). */
  get protocol(): LinkMode {
    return this.mode;
  }

  /** execute: starts or resumes a run and returns its output so far. */
  async execute(req: ExecuteRequest): Promise<RunResult> {
    await this.whenSynced();
    if (this.broken) throw new InternalError(this.broken);
    if (req.mode === 'continue' || req.mode === 'input') {
      const run = this.book.get(req.runId ?? '');
      if (!run) {
        if (this.options.takeOver)
          throw new RunLostError(
            `run ${req.runId} is not known to this kernel any more: it was in progress when the agent restarted, and its runner no longer holds it (it ended, or the runner restarted); its output cannot be recovered`,
          );
        throw new RunNotFoundError(`no run ${req.runId} on this kernel; start one with mode query or batch`);
      }
      run.unclaimed = false;
      if (req.mode === 'input') this.send('input', req.code, run.tag === null ? null : { t: run.tag, run: run.id });
      return this.book.collect(run, req.apiVersion, req.flushTimeoutMs);
    }
    const id = req.runId ?? randomUUID();
    const old = this.book.get(id);
    if (old && !old.done) throw new ParametersError(`run ${id} is still going; call again with mode continue`);
    if (old) this.book.forget(old);
    const inputs = req.mode === 'query' ? ([['code', req.code]] as Array<[string, string]>) : batchInputs(req.opts);
    const run = new Run(id, this.mode === 'tagged' ? this.link.newTag() : null, inputs);
    if (this.mode === 'tagged') this.sendInputs(run);
    this.book.add(run); // a runner that does not tag is sent it from here, once the runs before it have ended
    return this.book.collect(run, req.apiVersion, req.flushTimeoutMs);
  }

  /** Runs query-mode code to its end (driving `continue`) and returns the last result; for the agent's own commands. */
  async runToEnd(code: string, timeoutMs = 30_000): Promise<RunResult> {
    const deadline = Date.now() + timeoutMs;
    const flush = Math.min(1000, timeoutMs);
    let r = await this.execute({ apiVersion: 2, runId: null, mode: 'query', code, opts: {}, flushTimeoutMs: flush });
    while (r.status === 'continued') {
      if (Date.now() > deadline)
        throw new KernelUnresponsiveError(`the kernel runner did not finish ${JSON.stringify(code)} within ${timeoutMs / 1000} s`);
      r = await this.execute({ apiVersion: 2, runId: r.runId, mode: 'continue', code: '', opts: {}, flushTimeoutMs: flush });
    }
    return r;
  }

  /**
   * Resolves once the runner answers a `status` request (any payload: every
   * runner of section 4 answers one); a runner that has answered on this
   * relay before is asked again. Throws a KernelUnresponsiveError after
   * `timeoutMs`. The runner binds its ports a moment after its container
   * starts; what was sent meanwhile waits in the socket's queue.
   */
  async ready(timeoutMs = 30_000): Promise<void> {
    const message = `the kernel runner did not answer a status request within ${timeoutMs / 1000} s`;
    if (this.link.isUp) {
      await this.request('status', '', 'status', timeoutMs, message);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.link.whenUp(),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new KernelUnresponsiveError(message)), timeoutMs))),
      ]);
    } finally {
      clearTimeout(timer);
    }
    if (this.closed) throw new KernelUnresponsiveError('the connection to the kernel runner was closed');
  }

  /** interrupt_kernel: SIGINT (KeyboardInterrupt) to what the runner is running. */
  interrupt(): void {
    this.send('interrupt', '', null);
  }

  /** get_completions: asks the runner and waits (5 s at most) for its answer. */
  async complete(text: string, opts: Record<string, unknown>): Promise<string[]> {
    const list = payloadJson(
      await this.request(
        'complete',
        completionRequest(text, opts),
        'completion',
        5000,
        'the kernel did not answer the completion request within 5 s; it may be busy',
      ),
    );
    return Array.isArray(list) ? list.filter((x): x is string => typeof x === 'string') : [];
  }

  /** Sends a request record and waits for its answer's payload (matched by tag, or one at a time). */
  async request(type: string, payload: string, replyType: string, timeoutMs: number, timeoutMessage: string): Promise<Buffer> {
    await this.whenSynced();
    if (this.broken) throw new InternalError(this.broken);
    return this.requests.request(type, payload, replyType, timeoutMs, () => new KernelUnresponsiveError(timeoutMessage));
  }

  /** The agent is stopping: every call waiting on a run answers now (`continued`); the manager continues it on the restarted agent. */
  drain(): void {
    this.draining = true;
    this.book.wakeAll();
  }

  /**
   * Closes the sockets. With a reason (destroy, restart, container death),
   * every run not finished ends first — exit code -1 and `terminated:
   * <reason>` on stderr, or `not started: <reason>` for runs the runner
   * never began — and the runs whose ending was not collected yet are
   * returned, for a successor relay to answer. Without one (the agent
   * stops; the kernel runs on), waiting calls answer `continued`.
   */
  close(reason?: string): Run[] {
    if (this.closed) return [];
    this.closed = true;
    this.liveness.stop();
    const left = reason ? this.book.endAll(reason) : [];
    this.book.wakeAll();
    this.requests.failAll(() => new KernelUnresponsiveError('the connection to the kernel runner was closed'));
    const dropped = this.dropped + this.link.dropped;
    if (dropped + this.requests.dropped > 0)
      this.options.log.debug('records given to no run or request', {
        records: dropped,
        answers: this.requests.dropped,
        strayEnds: this.strayEnds,
      });
    this.link.close();
    this.book.releaseWaiters();
    return left;
  }

  /** Sends an input record (see {@link RunnerLink.send}). */
  private send(type: string, payload: string, meta: InputMeta): void {
    if (!this.closed) this.link.send(type, payload, meta);
  }

  private sendInputs(run: Run): void {
    for (const [type, payload] of run.inputs) this.send(type, payload, run.tag === null ? null : { t: run.tag, run: run.id, keep: true });
  }

  /** An `ack` or `resend` of the `keep` extension (docs/running-code.rst, "Kept output"), to a runner that keeps output. */
  private keepRequest(run: Run, type: 'ack' | 'resend', body: Record<string, number>): void {
    if (this.keeps && run.tag !== null) this.send(type, JSON.stringify(body), { t: run.tag, run: run.id });
  }

  private whenSynced(): Promise<void> {
    return this.closed ? Promise.resolve() : this.link.whenSynced();
  }

  /** The link knows whether the runner tags: a runner's hello says its generation, and which runs it holds of a previous agent. */
  private synced(mode: 'tagged' | 'untagged', hello: RunnerHello | null): void {
    if (mode === 'tagged' && hello) {
      this.generation = hello.generation;
      this.keeps = hello.keep;
      if (this.options.takeOver) this.runningTag = this.book.takeOver(hello) ?? this.runningTag;
      // Runs taken over get again what the previous agent did not acknowledge, their ends included.
      for (const run of this.book.all())
        if (!run.done && run.nextSeq !== null) this.keepRequest(run, 'resend', { from: (run.resendFrom = run.nextSeq) });
    }
  }

  /**
   * The link's read loop failed (a bug of ours handling a record, or the
   * socket): it logged the error. Every run not finished ends now with the
   * reason, and every request fails, rather than waiting out its timeout; the
   * relay serves later runs (the loop goes on) unless the link gave up.
   */
  private failed(err: unknown, final: boolean): void {
    const reason = `the agent's relay to this kernel failed (${errorMessage(err)}; the agent logged it at error level)`;
    this.runningTag = null;
    this.book.endAll(final ? reason : `${reason}; the kernel may still be running it`);
    this.book.wakeAll();
    this.requests.failAll(() => new InternalError(`${reason}; ask again`));
    if (final) this.broken = `${reason}; the relay gave up reading from the runner: destroy or restart the kernel`;
  }

  /** The link cut a frame over the size limit (it logged it): the run going on says so on its stderr. */
  private cut(line: string): void {
    const run = (this.runningTag !== null ? this.book.withTag(this.runningTag) : undefined) ?? this.book.head;
    if (run && !run.done) run.note(`[${line}]`);
  }

  /** Handles one record of the link; a promise returned holds the read loop back (the run is full). */
  private onRecord(rec: RunnerRecord, kept: boolean): Promise<void> | undefined {
    if (kept) return void this.accept(rec); // kept before the synchronisation: a previous agent's, of the generation the hello named
    const run = this.route(rec);
    // Back-pressure: a run holding as much output as it may is not read further until a reply takes it,
    // and a call waiting on it answers now (continued) rather than at its flush timeout.
    if (run?.output.full && !run.done) {
      run.wake();
      return run.output.waitForRoom();
    }
    return undefined;
  }

  /** Routes one record after the synchronisation; returns the run its output went to, if any. */
  private route(rec: RunnerRecord): Run | undefined {
    if (rec.type === 'hello') return void this.onHello(rec);
    if (this.mode === 'tagged' && rec.meta?.g !== undefined && rec.meta.g !== this.generation) {
      this.dropped++; // a runner that has died
      return undefined;
    }
    return this.accept(rec);
  }

  private onHello(rec: RunnerRecord): void {
    const h = parseHello(rec.payload);
    if (!h) return;
    if (rec.meta?.t !== undefined) this.requests.answer('hello', rec.meta.t, rec.payload);
    if (this.mode !== 'tagged') return; // a runner that did not answer in time is served as one that does not tag
    if (h.generation !== this.generation) {
      this.keeps = h.keep;
      this.runnerRestarted(h).catch((err: unknown) => {
        this.options.log.error('the relay failed handling a restart of the kernel runner; its runs and requests end now', {
          error: errorMessage(err),
          stack: err instanceof Error ? err.stack : undefined,
        });
        this.failed(err, false);
      });
    }
  }

  /** Gives a record to the run or request it belongs to. */
  private accept(rec: RunnerRecord): Run | undefined {
    const tagged = this.mode === 'tagged';
    switch (rec.type) {
      case 'completion':
      case 'status':
        this.requests.answer(rec.type, tagged ? (rec.meta?.t ?? '') : undefined, rec.payload);
        return undefined;
      case 'service-result':
        this.requests.answer(rec.type, tagged ? (rec.meta?.t ?? '') : undefined, rec.payload);
        return undefined;
      case 'started': {
        if (!tagged || rec.meta?.t === undefined) return undefined;
        this.liveness.heard();
        this.runningTag = rec.meta.t;
        const run = this.book.withTag(rec.meta.t);
        if (run && !run.started) this.book.begin(run);
        return undefined;
      }
      case 'stdout':
      case 'stderr':
      case 'media':
      case 'html':
      case 'waiting-input':
      case 'build-finished':
      case 'finished':
        break;
      default:
        return undefined; // a runner may send more than we know
    }
    const run = tagged ? (rec.meta?.t !== undefined ? this.book.withTag(rec.meta.t) : undefined) : this.book.head;
    this.liveness.heard();
    if (!run || run.done) {
      this.dropped++; // late output (rec.meta.late), or a run no longer held
      if ((rec.type === 'finished' || rec.type === 'build-finished') && this.strayEnds++ === 0)
        this.options.log.info('the kernel runner sent an end record for no run going; dropped (further ones are only counted)', {
          record: rec.type,
          payload: rec.payload.subarray(0, 200).toString('utf8'),
        });
      return undefined;
    }
    if (!inSequence(run, rec, (from) => this.keepRequest(run, 'resend', { from }))) {
      this.dropped++; // seen already, or after a gap (asked for again)
      return undefined;
    }
    if (rec.type === 'finished' && run.tag !== null && this.runningTag === run.tag) this.runningTag = null;
    this.book.deliver(run, rec);
    return run.unclaimed ? undefined : run;
  }

  /** A new runner generation: the old runner is gone; what that means for the runs is {@link runnerRestarted}'s. */
  private async runnerRestarted(h: RunnerHello): Promise<void> {
    this.generation = h.generation;
    const said = this.runningTag !== null ? this.book.withTag(this.runningTag) : undefined;
    this.runningTag = null;
    await runnerRestarted(this.loss, h, said);
  }

  /**
   * A runner that does not tag sent a `finished` without an exit code, as
   * the 2018 shell runner does before the `finished` that has one. A
   * `status` asked now is answered after that second record, if the runner
   * sends one (it sends both at once, and its answers leave in order): the
   * run ends at the second `finished`, or, if none came, at the answer.
   */
  private confirmEnd(run: Run): void {
    const end = () => {
      if (!run.done) this.book.finish(run, null);
    };
    this.requests.request('status', '', 'status', 5000, () => new KernelUnresponsiveError('no status')).then(end, end);
  }
}
