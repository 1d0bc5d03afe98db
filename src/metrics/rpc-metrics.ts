/**
 * The agent's own RPC and event metrics: per method of each generation's
 * table, the calls, the failures by wire error name and the latency
 * histogram, read at collection from the dispatchers' tallies
 * (src/rpc/call-tally.ts); and per event sink, the events sent and those
 * dropped by reason. Registered by AgentMetrics (src/metrics/metrics.ts).
 */
import { Counter, type Metric, type Registry } from 'prom-client';
import { RPC_LATENCY_BUCKETS, type CallTally, type MethodTally } from '../rpc/call-tally.js';
import { DROP_REASONS, type SinkStats } from '../events/sink.js';

/** An event sink as the metrics read it: its label (`push` for 2018 managers, `redis` for modern ones) and its counters. */
export interface SinkFigures {
  sink: string;
  stats: SinkStats;
}

/** Where the RPC and event figures come from, read at every collection. */
export interface RpcMetricsSources {
  /** The tally of each dispatcher (the 2018 table's and the modern one's). */
  rpcTallies?(): CallTally[];
  /** The event sinks. */
  eventSinks?(): SinkFigures[];
}

/** Each method's tally that has answered at least one call, with its labels (a method never called has no series). */
function* called(tallies: () => CallTally[]): Generator<{ labels: { generation: string; method: string }; m: MethodTally }> {
  for (const t of tallies()) {
    for (const m of t.all()) if (m.calls > 0) yield { labels: { generation: t.generation, method: m.method }, m };
  }
}

/**
 * A histogram read from the tallies at collection. prom-client's own
 * Histogram is written by observe(), which builds a key from the labels on
 * every call; the dispatcher's tally is plain numbers, so this object only
 * renders them, in the shape the registry prints (`_bucket` with `le`,
 * cumulative, then `_sum` and `_count`).
 */
class TallyHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly labelNames = ['generation', 'method'];

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly tallies: () => CallTally[],
  ) {}

  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: unknown[] }> {
    const values: unknown[] = [];
    const bucket = `${this.name}_bucket`;
    for (const { labels, m } of called(this.tallies)) {
      let acc = 0;
      RPC_LATENCY_BUCKETS.forEach((le, i) => {
        acc += m.buckets[i]!;
        values.push({ metricName: bucket, labels: { ...labels, le }, value: acc });
      });
      values.push({ metricName: bucket, labels: { ...labels, le: '+Inf' }, value: m.calls });
      values.push({ metricName: `${this.name}_sum`, labels, value: m.seconds });
      values.push({ metricName: `${this.name}_count`, labels, value: m.calls });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  /** Nothing to reset: the tallies belong to the dispatchers. */
  reset(): void {}
}

/** Registers the RPC and event metrics that `sources` can feed (none without them). */
export function registerRpcMetrics(sources: RpcMetricsSources, registry: Registry): void {
  const registers = [registry];
  const tallies = sources.rpcTallies?.bind(sources);
  if (tallies) {
    new Counter({
      name: 'compute_agent_rpc_calls_total',
      help: 'RPC calls answered, by generation (2018: aiozmq.rpc, modern: Callosum) and method (unknown: a name no table has).',
      labelNames: ['generation', 'method'],
      registers,
      collect() {
        this.reset();
        for (const { labels, m } of called(tallies)) this.inc(labels, m.calls);
      },
    });
    new Counter({
      name: 'compute_agent_rpc_errors_total',
      help: 'RPC calls answered with an error, by generation, method and the wire name of the error (reference/errors).',
      labelNames: ['generation', 'method', 'error'],
      registers,
      collect() {
        this.reset();
        for (const { labels, m } of called(tallies)) for (const [error, n] of m.errors) this.inc({ ...labels, error }, n);
      },
    });
    // Registered as prom-client prints it; the cast is because its types list only its own classes.
    registry.registerMetric(
      new TallyHistogram(
        'compute_agent_rpc_duration_seconds',
        'Seconds from a request decoded to its reply made, by generation and method.',
        tallies,
      ) as unknown as Metric,
    );
  }
  const sinks = sources.eventSinks?.bind(sources);
  if (sinks) {
    new Counter({
      name: 'compute_agent_events_accepted_total',
      help:
        "Events a sink took, by sink (push: into the 2018 PUSH socket's send queue, where a send may still fail and count as dropped; " +
        'redis: written to the Redis stream of modern managers).',
      labelNames: ['sink'],
      registers,
      collect() {
        this.reset();
        for (const s of sinks()) this.inc({ sink: s.sink }, s.stats.queued);
      },
    });
    new Counter({
      name: 'compute_agent_events_dropped_total',
      help:
        'Events not sent, by sink and reason (no_sink: no sink known yet, queue_full: the bounded queue was full, ' +
        'send_failed: the socket refused it at its bound or Redis failed it or had not taken it at close).',
      labelNames: ['sink', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const s of sinks()) for (const reason of DROP_REASONS) this.inc({ sink: s.sink, reason }, s.stats.droppedBy[reason]);
      },
    });
  }
}
