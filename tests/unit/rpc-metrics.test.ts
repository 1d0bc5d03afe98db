/**
 * The per-method RPC tally and its Prometheus form, without a socket: every
 * call the dispatcher answers is counted under its method (a name no table
 * has under `unknown`), each failure under its wire error name, and the
 * exposition has the histogram's cumulative buckets, sum and count.
 */
import { expect } from 'chai';
import { KernelNotFoundError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { Dispatcher, implement } from '../../src/rpc/dispatcher.js';
import { methods } from '../../src/rpc/methods.js';
import { CallTally, RPC_LATENCY_BUCKETS, UNKNOWN_METHOD } from '../../src/rpc/call-tally.js';
import { AgentMetrics } from '../../src/metrics/metrics.js';
import { emptySinkStats } from '../../src/events/sink.js';
import type { ParsedRequest } from '../../src/wire/frames.js';
import { parsePrometheus, sample } from '../helpers/prometheus.js';

const req = (method: string, args: unknown[]): ParsedRequest => ({
  kind: 'request',
  envelope: [],
  header: { pid: 1, random: 1, requestId: 1, time: 0 },
  method,
  args,
  kwargs: {},
});

/** Metrics over the given tallies only (every other source empty). */
function metricsOf(tallies: CallTally[]): AgentMetrics {
  return new AgentMetrics(
    {
      poolSizes: () => [],
      claimTotals: () => new Map(),
      coldTotals: () => new Map(),
      poolPasses: () => 0,
      kernelStates: () => ({}),
      imagesCollected: () => 0,
      rpcTallies: () => tallies,
      eventSinks: () => [
        { sink: 'push', stats: { ...emptySinkStats(), queued: 4, dropped: 3, droppedBy: { no_sink: 2, queue_full: 1, send_failed: 0 } } },
      ],
    },
    { file: null, port: null, host: '*', intervalMs: 1000, log: silentLogger() },
  );
}

describe('per-method RPC metrics', () => {
  it('counts calls, failures by wire name and latencies per method, and a name no table has as unknown', async () => {
    let release: (v: string) => void = () => undefined;
    const d = new Dispatcher(
      [
        implement(methods.ping, (m) => m),
        implement(methods.get_logs, (id) => Promise.reject(new KernelNotFoundError(id))),
        implement(methods.interrupt_kernel, () => new Promise<null>((r) => (release = () => r(null)))),
      ],
      silentLogger(),
      'modern',
    );
    for (let i = 0; i < 3; i++) await d.handle(req('ping', ['x']));
    await d.handle(req('ping', [])); // bad arguments: a ParametersError
    await d.handle(req('get_logs', ['k1']));
    await d.handle(req('no_such', []));
    await d.handle(req(`x".repeat(1000)`, []));
    const pending = d.handle(req('interrupt_kernel', ['k1']));
    expect(d.tally.of('interrupt_kernel').calls).to.equal(0); // counted when it answers
    release('');
    await pending;

    const ping = d.tally.of('ping');
    expect(ping.calls).to.equal(4);
    expect([...ping.errors]).to.deep.equal([['aiozmq.rpc.base.ParametersError', 1]]);
    expect([...d.tally.of('get_logs').errors]).to.deep.equal([['agent.KernelNotFound', 1]]);
    expect(d.tally.of('interrupt_kernel').calls).to.equal(1);
    expect(d.tally.of('no_such')).to.equal(d.tally.unknown);
    expect(d.tally.unknown.calls).to.equal(2);
    expect([...d.tally.unknown.errors]).to.deep.equal([['aiozmq.rpc.base.NotFoundError', 2]]);

    const m = parsePrometheus(await metricsOf([d.tally]).registry.metrics());
    const g = { generation: 'modern' };
    expect(sample(m, 'compute_agent_rpc_calls_total', { ...g, method: 'ping' })).to.equal(4);
    expect(sample(m, 'compute_agent_rpc_calls_total', { ...g, method: UNKNOWN_METHOD })).to.equal(2);
    expect(sample(m, 'compute_agent_rpc_errors_total', { ...g, method: 'ping', error: 'aiozmq.rpc.base.ParametersError' })).to.equal(1);
    expect(sample(m, 'compute_agent_rpc_errors_total', { ...g, method: 'get_logs', error: 'agent.KernelNotFound' })).to.equal(1);
    expect(sample(m, 'compute_agent_rpc_errors_total', { ...g, method: 'unknown', error: 'aiozmq.rpc.base.NotFoundError' })).to.equal(2);
    expect(m.types.get('compute_agent_rpc_duration_seconds')).to.equal('histogram');
    // a method never called has no series; the raw names never appear
    expect(m.samples.filter((s) => s.labels.method === 'get_completions')).to.deep.equal([]);
    expect(new Set(m.samples.flatMap((s) => (s.labels.method ? [s.labels.method] : [])))).to.deep.equal(
      new Set(['ping', 'get_logs', 'interrupt_kernel', UNKNOWN_METHOD]),
    );
    for (const method of ['ping', 'get_logs', 'interrupt_kernel', UNKNOWN_METHOD]) {
      const buckets = m.samples.filter((s) => s.name === 'compute_agent_rpc_duration_seconds_bucket' && s.labels.method === method);
      expect(buckets.map((b) => b.labels.le)).to.deep.equal([...RPC_LATENCY_BUCKETS.map(String), '+Inf']);
      const counts = buckets.map((b) => b.value);
      expect(counts, method).to.deep.equal([...counts].sort((a, b) => a - b)); // cumulative
      const calls = d.tally.of(method).calls;
      expect(counts.at(-1)).to.equal(calls);
      expect(sample(m, 'compute_agent_rpc_duration_seconds_count', { ...g, method })).to.equal(calls);
      expect(sample(m, 'compute_agent_rpc_duration_seconds_sum', { ...g, method })).to.equal(d.tally.of(method).seconds);
    }
    expect(sample(m, 'compute_agent_events_accepted_total', { sink: 'push' })).to.equal(4);
    expect(sample(m, 'compute_agent_events_dropped_total', { sink: 'push', reason: 'no_sink' })).to.equal(2);
    expect(sample(m, 'compute_agent_events_dropped_total', { sink: 'push', reason: 'queue_full' })).to.equal(1);
    expect(sample(m, 'compute_agent_events_dropped_total', { sink: 'push', reason: 'send_failed' })).to.equal(0);
  });

  it('puts each latency in the first bucket whose bound it does not pass', () => {
    const t = new CallTally('2018', ['ping']).of('ping');
    const at = (seconds: number) => performance.now() - seconds * 1000;
    t.record(at(0.0002), null);
    t.record(at(0.003), null);
    t.record(at(7), 'agent.Timeout');
    t.record(at(1000), null);
    const filled = [...t.buckets.entries()].filter(([, n]) => n > 0).map(([i, n]) => [RPC_LATENCY_BUCKETS[i] ?? Infinity, n]);
    expect(filled).to.deep.equal([
      [0.0005, 1],
      [0.005, 1],
      [10, 1],
      [Infinity, 1],
    ]);
    expect(t.calls).to.equal(4);
    expect(t.seconds).to.be.within(1007.003, 1007.1);
  });

  it('refuses a table with a method named like the label of unknown names', () => {
    expect(() => new CallTally('2018', ['ping', UNKNOWN_METHOD])).to.throw(/may not be named unknown/);
  });
});
