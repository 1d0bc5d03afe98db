/**
 * The per-method RPC tally: for each method of a dispatcher's table, how
 * many calls it answered, how many of them failed by wire error name, and
 * how long they took (a histogram with fixed buckets). The dispatcher
 * records every call here in plain numbers, made once per method when the
 * table is built, so that a call costs two clock reads and a few additions;
 * the metrics read them at collection (src/metrics/rpc-metrics.ts).
 */

/**
 * Upper bounds (seconds) of the latency histogram's buckets: from the
 * sub-millisecond answers of ping and the state readers to the seconds and
 * minutes of create_kernel, image pulls and long-polled execute.
 */
export const RPC_LATENCY_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
];

/**
 * The label of calls to a method that is not in the table. A hostile
 * manager can send any name; only names of the declared tables become
 * labels, so that the series stay bounded.
 */
export const UNKNOWN_METHOD = 'unknown';

/** MethodTally is one method's counts: calls, failures by wire error name, and the latency histogram. */
export class MethodTally {
  /** Calls answered (successes and failures). */
  calls = 0;
  /** Seconds of all the calls together. */
  seconds = 0;
  /** Calls per bucket of {@link RPC_LATENCY_BUCKETS}, not cumulative; the last one is above every bound. */
  readonly buckets = new Float64Array(RPC_LATENCY_BUCKETS.length + 1);
  /** Failed calls by the wire name of their error (`agent.KernelNotFound`); the names come from the error catalogue only. */
  readonly errors = new Map<string, number>();

  constructor(readonly method: string) {}

  /** Records a call that started at `startMs` (performance.now()) and answered now; `error` is its wire error name, null when it succeeded. */
  record(startMs: number, error: string | null): void {
    const s = (performance.now() - startMs) / 1000;
    this.calls++;
    this.seconds += s;
    let i = 0;
    while (i < RPC_LATENCY_BUCKETS.length && s > RPC_LATENCY_BUCKETS[i]!) i++;
    this.buckets[i]!++;
    if (error !== null) this.errors.set(error, (this.errors.get(error) ?? 0) + 1);
  }
}

/** CallTally is the tally of one dispatcher: a {@link MethodTally} per method of its table and one for every other name. */
export class CallTally {
  private readonly byName = new Map<string, MethodTally>();
  /** Calls to names the table does not have, whatever the name. */
  readonly unknown = new MethodTally(UNKNOWN_METHOD);

  /** `generation` labels this dispatcher's calls: `2018` (aiozmq.rpc) or `modern` (Callosum). */
  constructor(
    readonly generation: string,
    methods: Iterable<string>,
  ) {
    for (const m of methods) {
      if (m === UNKNOWN_METHOD) throw new Error(`a method may not be named ${UNKNOWN_METHOD}: that label counts the names no table has`);
      this.byName.set(m, new MethodTally(m));
    }
  }

  /** The tally of a method name; the shared {@link unknown} one for a name not in the table. */
  of(method: string): MethodTally {
    return this.byName.get(method) ?? this.unknown;
  }

  /** Every method's tally, the table's first, then the unknown one. */
  all(): MethodTally[] {
    return [...this.byName.values(), this.unknown];
  }
}
