/**
 * The records of a kernel runner as the relay reads them (docs/wire-contract.rst, "Kernel runner ports"), and the runner-integrity extension beyond it: a third frame of
 * JSON meta (`{g: generation, t: tag}`) on every record of a runner that
 * speaks it, the `hello` record a runner announces itself with, and what the
 * end of a runner incarnation means for the run it was running.
 * Pure functions: no sockets here.
 */
import { unpack } from 'msgpackr';

/** The meta frame of a record: the runner's generation, the tag of the input it belongs to, or `late` (output between jobs). */
export interface RecordMeta {
  g?: string;
  t?: string;
  late?: boolean;
  /** The record's number in its run (the `keep` extension: docs/running-code.rst, "Kept output"). */
  s?: number;
  /** The record is the marker of output the runner dropped, numbered as the last record dropped. */
  lost?: boolean;
}

/** One record from the runner's output port. */
export interface RunnerRecord {
  type: string;
  payload: Buffer;
  /** null: a two-frame record (a runner that does not tag, or has not been asked to yet). */
  meta: RecordMeta | null;
}

/** A job as a runner reports it: the agent's tag and run id. */
export interface JobRef {
  t: string;
  run: string | null;
  /** The last record of the run an agent acknowledged (0: none; the `keep` extension). */
  acked: number;
}

/** What a runner says in `hello`: who it is, how its predecessor ended, and what it holds. */
export interface RunnerHello {
  generation: string;
  pid: number | null;
  /** The runner keeps its runs' output until acknowledged (its hello lists the feature `keep`). */
  keep: boolean;
  /** The exit status of the runner before this one (bash's `$?`), or null on a first start. */
  previousStatus: number | null;
  current: JobRef | null;
  queue: JobRef[];
  recent: Array<JobRef & { exitCode: number | null }>;
}

const MAX_META_BYTES = 4096;

/** Parses the frames of one record; null for what is not a record at all (no type frame). */
export function parseRecord(frames: Buffer[]): RunnerRecord | null {
  const [typeFrame, payload = Buffer.alloc(0), metaFrame] = frames;
  if (!typeFrame || typeFrame.length > 64) return null;
  let meta: RecordMeta | null = null;
  if (metaFrame && metaFrame.length <= MAX_META_BYTES) {
    try {
      const m = JSON.parse(metaFrame.toString('utf8')) as Record<string, unknown>;
      if (m && typeof m === 'object' && !Array.isArray(m)) {
        meta = {};
        if (typeof m.g === 'string') meta.g = m.g;
        if (typeof m.t === 'string') meta.t = m.t;
        if (m.late === true) meta.late = true;
        if (typeof m.s === 'number' && Number.isSafeInteger(m.s) && m.s >= 0) meta.s = m.s;
        if (m.lost === true) meta.lost = true;
      }
    } catch {
      meta = null;
    }
  }
  return { type: typeFrame.toString('utf8'), payload, meta };
}

function jobRef(v: unknown): JobRef | null {
  if (!v || typeof v !== 'object') return null;
  const o = v as Record<string, unknown>;
  if (typeof o.t !== 'string') return null;
  const acked = typeof o.acked === 'number' && Number.isSafeInteger(o.acked) && o.acked >= 0 ? o.acked : 0;
  return { t: o.t, run: typeof o.run === 'string' ? o.run : null, acked };
}

/** Reads a `hello` payload (JSON); null when it is not one (a foreign record of the same name, or garbage). */
export function parseHello(payload: Buffer): RunnerHello | null {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (!o || typeof o !== 'object' || typeof o.generation !== 'string' || o.generation === '' || o.generation.length > 128) return null;
  const prev = o.previous as { status?: unknown } | null | undefined;
  const list = (v: unknown) => (Array.isArray(v) ? v.slice(0, 4096) : []);
  return {
    generation: o.generation,
    pid: typeof o.pid === 'number' ? o.pid : null,
    keep: Array.isArray(o.features) && o.features.includes('keep'),
    previousStatus: prev && typeof prev.status === 'number' ? prev.status : null,
    current: jobRef(o.current),
    queue: list(o.queue)
      .map(jobRef)
      .filter((j): j is JobRef => j !== null),
    recent: list(o.recent).flatMap((r) => {
      const j = jobRef(r);
      if (!j) return []; // not an object with a tag (null included): nothing to read an exit code from
      const code = (r as { exitCode?: unknown }).exitCode;
      return [{ ...j, exitCode: typeof code === 'number' ? code : null }];
    }),
  };
}

/** Reads a `status` payload (a msgpack map); null when it is not one. */
export function parseStatus(payload: Buffer): Record<string, unknown> | null {
  try {
    const v = unpack(payload) as unknown;
    return v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

const SIGNALS: Record<number, string> = {
  1: 'SIGHUP',
  2: 'SIGINT',
  3: 'SIGQUIT',
  4: 'SIGILL',
  6: 'SIGABRT',
  7: 'SIGBUS',
  8: 'SIGFPE',
  9: 'SIGKILL',
  11: 'SIGSEGV',
  13: 'SIGPIPE',
  15: 'SIGTERM',
};

/** How a runner incarnation ended, as the run that died with it reports it. */
export interface RunnerEnd {
  /** The run's exit code: the status for an exit, 128 + N for signal N; -1 when unknown or 0 (a run that died is no success). */
  exitCode: number;
  /** One line for the run's stderr and the log, e.g. `runner died: signal 11 (SIGSEGV)`. */
  line: string;
}

/**
 * Says how a runner ended from the status its entrypoint saw (bash's `$?`)
 * and whether the kernel's OOM-kill counter rose meanwhile.
 */
export function describeRunnerEnd(status: number | null, oom: { killed: boolean; limitMiB: number }): RunnerEnd {
  if (oom.killed && (status === null || status === 137)) {
    return { exitCode: 137, line: `killed: out of memory (limit ${oom.limitMiB} MiB)` };
  }
  if (status === null) return { exitCode: -1, line: 'runner restarted (how the previous one ended is unknown)' };
  if (status > 128 && status < 160) {
    const sig = status - 128;
    return { exitCode: status, line: `runner died: signal ${sig}${SIGNALS[sig] ? ` (${SIGNALS[sig]})` : ''}` };
  }
  return { exitCode: status === 0 ? -1 : status, line: `runner exited with status ${status}` };
}

/** A record's JSON payload; null when it is not JSON. */
export function payloadJson(payload: Buffer): Record<string, unknown> | unknown[] | null {
  try {
    return JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
  } catch {
    return null; // a payload that is not JSON is read as none: the caller has a default
  }
}

/** The exit code a `finished` or `build-finished` payload carries (`{"exitCode": n}`); null when it has none. */
export function payloadExitCode(payload: Buffer): number | null {
  const v = payloadJson(payload) as { exitCode?: unknown } | null;
  return v && typeof v.exitCode === 'number' ? v.exitCode : null;
}

/**
 * The records of a batch run: its `build` and its `exec`, verbatim, `*` and
 * the empty string included (a missing or non-string one is empty), one
 * record each. The runner decides what they mean (`*`: its default; empty:
 * skip) and answers each with one `build-finished` or `finished`
 * (docs/wire-contract.rst, "Kernel runner ports").
 */
export function batchInputs(opts: Record<string, unknown>): Array<[string, string]> {
  const cmd = (v: unknown) => (typeof v === 'string' ? v : '');
  return [
    ['build', cmd(opts.build)],
    ['exec', cmd(opts.exec)],
  ];
}

/** The payload of a `complete` request: the client's opts as given, `line` set to the text where absent, and `code` set to the text. */
export function completionRequest(text: string, opts: Record<string, unknown>): string {
  return JSON.stringify({ ...opts, line: opts.line === undefined ? text : opts.line, code: text });
}
