/**
 * The runs of the fault soak (tests/soak/faults.ts) and their driving
 * through agent deaths: programs whose output is known from their code, the
 * link to whichever agent process is up now, and the driver that follows a
 * run with `continue` across restarts (docs/running-code.rst, "The agent
 * stopping") and holds what it collected against what the code printed.
 */
import { createHash } from 'node:crypto';
import { type AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import { type RunResult } from '../../src/rpc/results.js';
import { RemoteError } from '../../src/errors.js';

/** A run's code and exactly what it prints when it runs to its end. */
export interface Program {
  kind: 'quick' | 'slow' | 'input' | 'verify' | 'fill' | 'free';
  code: string;
  stdout: string;
  stderr: string;
  /** Text given to the run's `input()`; `early` sends it before the run asks. */
  input?: { text: string; early: boolean };
}

const lines = (xs: string[]) => xs.map((x) => `${x}\n`).join('');
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** A run that prints `n` numbered lines at once (unflushed: they leave in big records). */
export function quick(tok: string, n: number): Program {
  return {
    kind: 'quick',
    code: `for i in range(${n}): print(${JSON.stringify(tok)}, i, "x" * (i % 97))\nprint(${JSON.stringify(tok)}, "end")`,
    stdout: lines([...range(n).map((i) => `${tok} ${i} ${'x'.repeat(i % 97)}`), `${tok} end`]),
    stderr: '',
  };
}

/** A run that prints `n` lines `sleepMs` apart, every third one on stderr too: long enough for the agent to die under it. */
export function slow(tok: string, n: number, sleepMs: number): Program {
  const t = JSON.stringify(tok);
  return {
    kind: 'slow',
    code:
      `import sys, time\nfor i in range(${n}):\n    print(${t}, i, flush=True)\n` +
      `    if i % 3 == 0: print(${t}, "err", i, file=sys.stderr, flush=True)\n    time.sleep(${sleepMs / 1000})\nprint(${t}, "end")`,
    stdout: lines([...range(n).map((i) => `${tok} ${i}`), `${tok} end`]),
    stderr: lines(
      range(n)
        .filter((i) => i % 3 === 0)
        .map((i) => `${tok} err ${i}`),
    ),
  };
}

/** A run that asks for a line and prints it back; `early` sends the line before the run asks (kept until it does). */
export function asks(tok: string, early: boolean, delayMs: number): Program {
  const t = JSON.stringify(tok);
  return {
    kind: 'input',
    code: `import time\nprint(${t}, "ask", flush=True)\ntime.sleep(${delayMs / 1000})\nx = input()\nprint(${t}, "got", x)`,
    stdout: lines([`${tok} ask`, `${tok} got answer-${tok}`]),
    stderr: '',
    input: { text: `answer-${tok}`, early },
  };
}

/** The sha256 of bytes, in hex. */
export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A run that prints the sha256 of each of these files of the home (or MISSING), and so shows every one is there and whole. */
export function verify(tok: string, files: ReadonlyMap<string, string>): Program {
  const names = [...files.keys()].sort();
  return {
    kind: 'verify',
    code:
      `import hashlib, os\nfor n in ${JSON.stringify(names)}:\n` +
      `    print(n, hashlib.sha256(open(n, "rb").read()).hexdigest() if os.path.exists(n) else "MISSING")\nprint(${JSON.stringify(tok)}, "verified")`,
    stdout: lines([...names.map((n) => `${n} ${files.get(n)}`), `${tok} verified`]),
    stderr: '',
  };
}

/** The file a fill writes, and the run that writes it until the home is full (1 MiB, then 4 KiB steps, so no block is left). */
export const FILLER = 'soak-filler.bin';
export function fill(tok: string): Program {
  return {
    kind: 'fill',
    code:
      `import errno, os\nfd = os.open(${JSON.stringify(FILLER)}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)\n` +
      `for step in (1048576, 4096, 512):\n    try:\n        while True: os.write(fd, b"f" * step)\n` +
      `    except OSError as e:\n        code = errno.errorcode[e.errno]\nos.close(fd)\nprint(${JSON.stringify(tok)}, "full", code)`,
    stdout: lines([`${tok} full ENOSPC`]),
    stderr: '',
  };
}

/** The run that removes the filler again. */
export function free(tok: string): Program {
  return {
    kind: 'free',
    code: `import os\nos.remove(${JSON.stringify(FILLER)})\nprint(${JSON.stringify(tok)}, "freed")`,
    stdout: lines([`${tok} freed`]),
    stderr: '',
  };
}

/** Whether an error is the transport failing (no reply: the agent died, or the link closed its client) rather than an agent's answer. */
function transportFailure(err: unknown): boolean {
  return !(err instanceof RemoteError) || err.remoteType === 'agent.ShuttingDown';
}

/**
 * The agent process that is up now, as a caller sees it: a client, and a
 * generation that grows at each restart. While the soak restarts the agent,
 * new calls wait for the next one (so that no request queued in the old
 * client reaches the new agent); calls in flight at the death fail when the
 * link closes the old client, after the new agent is up.
 */
export class Link {
  generation = 0;
  private down: { promise: Promise<void>; resolve: () => void } | null = null;

  constructor(public client: AgentClient) {}

  /** The agent is about to be stopped: new calls wait until {@link up}. */
  goingDown(): void {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.down = { promise, resolve };
  }

  /** The new agent is up: later calls go to it, and calls left in the old client fail (the caller tries them again). */
  up(client: AgentClient): void {
    const old = this.client;
    this.client = client;
    this.generation++;
    this.down?.resolve();
    this.down = null;
    old.close();
  }

  /** Whether the agent is being restarted now. */
  get restarting(): boolean {
    return this.down !== null;
  }

  /** Resolves once the agent is up (at once unless it is being restarted). */
  async ready(): Promise<void> {
    while (this.down) await this.down.promise;
  }

  /**
   * Calls through whichever agent is up, again after each death of the
   * transport (an idempotent call: an upload of the same bytes, a list);
   * an answer of the agent, an error included, is given back as it came.
   */
  async retried<T>(fn: (c: AgentClient) => Promise<T>): Promise<T> {
    for (;;) {
      await this.ready();
      const gen = this.generation;
      try {
        return await fn(this.client);
      } catch (err) {
        if (!transportFailure(err) || (gen === this.generation && !this.restarting)) throw err;
      }
    }
  }
}

/** What one run gave, held against its program by {@link runProblems}. */
export interface RunOutcome {
  runId: string;
  status: string;
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** Queries that reached no agent (it died first) and were sent again as a new run. */
  requeried: number;
  /** Calls of the run that a death of the agent cut, taken up with `continue` on the next. */
  resumed: number;
}

const text = (r: RunResult, stream: string) =>
  (r.console ?? [])
    .filter((e) => e[0] === stream)
    .map((e) => String(e[1]))
    .join('');

/** How long one execute call may wait for its reply (the flush timeout is 1 s; a loaded machine is slow). */
const CALL_MS = 120_000;
/** How long a run may take to its end, restarts of the agent included (the longest program runs about 10 s): past it the run is a problem, not a wait without end. */
const RUN_MS = 180_000;

/**
 * Runs a program on a kernel to its end, through agent deaths: a call cut
 * by a death is taken up with `continue` on the next agent, a query that
 * no agent got (`agent.RunLost` before any reply) is sent again under a new
 * run id, and `waiting-input` is answered with the program's input.
 * Anything else the agent answers is thrown.
 */
export async function driveRun(link: Link, kernelId: string, runId: string, p: Program): Promise<RunOutcome> {
  const out: RunOutcome = { runId, status: '', exitCode: null, stdout: '', stderr: '', requeried: 0, resumed: 0 };
  let id = runId;
  let replied = false;
  let inputSent = false;
  let next: { mode: 'query' | 'continue' | 'input'; code: string } = { mode: 'query', code: p.code };
  const deadline = Date.now() + RUN_MS;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`run ${id} did not end within ${RUN_MS / 1000} s (last status ${out.status || 'none'})`);
    await link.ready();
    const gen = link.generation;
    let r: RunResult;
    try {
      r = await link.client.callWithTimeout(CALL_MS, methods.execute, 2, kernelId, id, next.mode, next.code, {}, 1);
      if (next.mode === 'input') inputSent = true;
    } catch (err) {
      if (err instanceof RemoteError && err.remoteType === 'agent.RunLost' && !replied && next.mode !== 'query') {
        // the query died with the agent before the runner had it: nothing of the run exists, so it is sent again
        out.requeried++;
        id = `${runId}-again${out.requeried}`;
        next = { mode: 'query', code: p.code };
        continue;
      }
      if (!transportFailure(err)) throw err;
      if (gen === link.generation && !link.restarting) throw err; // no death of the agent explains it
      out.resumed++;
      next = { mode: 'continue', code: '' };
      continue;
    }
    replied = true;
    out.stdout += text(r, 'stdout');
    out.stderr += text(r, 'stderr');
    out.status = r.status;
    out.exitCode = r.exitCode;
    if (next.mode === 'query' && p.input?.early && !inputSent) {
      next = { mode: 'input', code: p.input.text };
      continue;
    }
    if (r.status === 'waiting-input') {
      if (!p.input) throw new Error(`run ${id} asked for input, which its code never does`);
      next = { mode: 'input', code: p.input.text };
      continue;
    }
    if (r.status !== 'continued' && r.status !== 'build-finished') return out;
    next = { mode: 'continue', code: '' };
  }
}

/** What is wrong with a run's outcome against its program: empty when it printed exactly that, once, and ended well. */
export function runProblems(kernelId: string, p: Program, o: RunOutcome): string[] {
  const where = `run ${o.runId} (${p.kind}) on ${kernelId}`;
  const problems: string[] = [];
  if (o.status !== 'finished' || o.exitCode !== 0) problems.push(`${where} ended ${o.status} with exit code ${o.exitCode}`);
  for (const [stream, got, want] of [
    ['stdout', o.stdout, p.stdout],
    ['stderr', o.stderr, p.stderr],
  ] as const) {
    if (got !== want) problems.push(`${where}: its ${stream} is not what it printed (${describeDiff(got, want)})`);
  }
  return problems;
}

/** Where two outputs part, in words: lost, duplicated or changed lines. */
function describeDiff(got: string, want: string): string {
  const g = got.split('\n');
  const w = want.split('\n');
  let i = 0;
  while (i < g.length && i < w.length && g[i] === w[i]) i++;
  const dup = i < g.length && g.slice(0, i).includes(g[i]!);
  return (
    `${g.length - 1} lines, ${w.length - 1} printed; first difference at line ${i + 1}: got ${JSON.stringify(g[i]?.slice(0, 80))}, ` +
    `printed ${JSON.stringify(w[i]?.slice(0, 80))}${dup ? ' (a line seen before: duplicated)' : ''}`
  );
}
