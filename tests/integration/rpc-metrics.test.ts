/**
 * The agent's own RPC and event metrics (docs/observability.rst), scraped
 * from a running agent's `GET /metrics`: calls of both generations on one
 * port counted per method, failures by wire error name, the latency
 * histograms; events dropped by sink and reason, with a manager sink and a
 * Redis that do not take them.
 */
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { modernMethods } from '../../src/rpc/modern-methods.js';
import { CallosumClient } from '../../src/rpc/callosum-client.js';
import { RPC_LATENCY_BUCKETS } from '../../src/rpc/call-tally.js';
import { EVENT_ADDR_KEY, MANAGER_KEY, REDIS_ADDR_KEY } from '../../src/config/etcd-keys.js';
import { DROP_REASONS, type SinkStats } from '../../src/events/sink.js';
import { eventually, freePort, onCleanup, remoteError, requireEtcd, startAgent } from '../helpers/env.js';
import { parsePrometheus, sample, type Exposition } from '../helpers/prometheus.js';

const scrape = async (port: number): Promise<Exposition> => parsePrometheus(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());

describe('per-method RPC metrics of a running agent', function () {
  this.timeout(60_000);
  before(requireEtcd);

  it('counts calls of both generations per method, failures by wire error name and their latencies, exactly', async () => {
    const metricsPort = await freePort();
    const { client, port } = await startAgent({ metricsPort });
    const modern = new CallosumClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 5000 });
    onCleanup(() => modern.close());

    for (const m of ['a', 'b', 'c']) expect(await client.call(methods.ping, m)).to.equal(m);
    expect((await remoteError(client.call(methods.interrupt_kernel, 'no-such-kernel'))).remoteType).to.equal('agent.KernelNotFound');
    expect((await remoteError(client.callRaw('no_such_method', []))).remoteType).to.equal('aiozmq.rpc.base.NotFoundError');
    expect((await remoteError(client.callRaw('ping', []))).remoteType).to.equal('aiozmq.rpc.base.ParametersError');
    for (const m of ['d', 'e']) expect(await modern.call(modernMethods.ping, m)).to.equal(m);
    expect((await remoteError(modern.call(modernMethods.interrupt_kernel, 'no-such-kernel'))).remoteType).to.equal('KernelNotFound');
    expect((await remoteError(modern.callRaw('no_such_method', []))).remoteType).to.equal('KeyError');

    const m = await scrape(metricsPort);
    const calls = (generation: string, method: string) => sample(m, 'compute_agent_rpc_calls_total', { generation, method });
    const errors = (generation: string, method: string, error: string) =>
      sample(m, 'compute_agent_rpc_errors_total', { generation, method, error });
    expect(calls('2018', 'ping')).to.equal(4);
    expect(calls('2018', 'interrupt_kernel')).to.equal(1);
    expect(calls('2018', 'unknown')).to.equal(1);
    expect(calls('modern', 'ping')).to.equal(2);
    expect(calls('modern', 'interrupt_kernel')).to.equal(1);
    expect(calls('modern', 'unknown')).to.equal(1);
    expect(errors('2018', 'ping', 'aiozmq.rpc.base.ParametersError')).to.equal(1);
    expect(errors('2018', 'interrupt_kernel', 'agent.KernelNotFound')).to.equal(1);
    expect(errors('2018', 'unknown', 'aiozmq.rpc.base.NotFoundError')).to.equal(1);
    expect(errors('modern', 'interrupt_kernel', 'agent.KernelNotFound')).to.equal(1);
    // the Callosum reply says KeyError (as 24.09 does); the metric keeps the agent's own wire name
    expect(errors('modern', 'unknown', 'aiozmq.rpc.base.NotFoundError')).to.equal(1);
    const errorSeries = m.samples.filter((s) => s.name === 'compute_agent_rpc_errors_total');
    expect(errorSeries.map((s) => `${s.labels.generation} ${s.labels.method} ${s.labels.error}`).sort()).to.deep.equal([
      '2018 interrupt_kernel agent.KernelNotFound',
      '2018 ping aiozmq.rpc.base.ParametersError',
      '2018 unknown aiozmq.rpc.base.NotFoundError',
      'modern interrupt_kernel agent.KernelNotFound',
      'modern unknown aiozmq.rpc.base.NotFoundError',
    ]);
    // only what was called has series: 3 methods of each generation
    const called = m.samples.filter((s) => s.name === 'compute_agent_rpc_calls_total');
    expect(called).to.have.length(6);
    for (const s of called) {
      const labels = { generation: s.labels.generation!, method: s.labels.method! };
      const buckets = m.samples.filter(
        (b) =>
          b.name === 'compute_agent_rpc_duration_seconds_bucket' &&
          b.labels.method === labels.method &&
          b.labels.generation === labels.generation,
      );
      expect(buckets.map((b) => b.labels.le)).to.deep.equal([...RPC_LATENCY_BUCKETS.map(String), '+Inf']);
      const counts = buckets.map((b) => b.value);
      expect(counts, JSON.stringify(labels)).to.deep.equal([...counts].sort((a, b) => a - b));
      expect(counts.at(-1)).to.equal(s.value);
      expect(sample(m, 'compute_agent_rpc_duration_seconds_count', labels)).to.equal(s.value);
      expect(sample(m, 'compute_agent_rpc_duration_seconds_sum', labels)).to.be.greaterThan(0);
    }
    expect(m.types.get('compute_agent_rpc_duration_seconds')).to.equal('histogram');
    expect(m.types.get('compute_agent_rpc_calls_total')).to.equal('counter');
  });

  it('counts events dropped by sink and reason: a manager sink and a Redis that take nothing', async () => {
    const metricsPort = await freePort();
    const [deadPush, deadRedis] = [await freePort(), await freePort()]; // nothing listens on either
    const { agent, etcd } = await startAgent({ metricsPort }, async (ns) => {
      await ns.put('config/agent/heartbeat_interval').value('0.1');
      await ns.put('config/agent/event_queue_limit').value('3');
      await ns.put(REDIS_ADDR_KEY).value(`127.0.0.1:${deadRedis}`);
    });
    await agent.afterHeartbeats(2);
    expect(agent.stats().events.droppedBy.no_sink, 'heartbeats before a manager sink is known').to.be.greaterThan(0);
    await etcd.put(MANAGER_KEY).value('mgr');
    await etcd.put(EVENT_ADDR_KEY).value(`127.0.0.1:${deadPush}`);
    // the PUSH socket refuses at its high-water mark (send_failed); the Redis sink's own queue fills (queue_full)
    await eventually('the PUSH socket to refuse events', () => (agent.stats().events.droppedBy.send_failed > 0 ? true : undefined));
    await eventually('the Redis queue to fill', () => (agent.stats().modernEvents.droppedBy.queue_full > 0 ? true : undefined));

    const before = agent.stats();
    const m = await scrape(metricsPort);
    const after = agent.stats();
    const within = (sink: string, from: SinkStats, to: SinkStats) => {
      for (const reason of DROP_REASONS) {
        const v = sample(m, 'compute_agent_events_dropped_total', { sink, reason });
        expect(v, `${sink} ${reason}`).to.be.within(from.droppedBy[reason], to.droppedBy[reason]);
      }
      expect(sample(m, 'compute_agent_events_accepted_total', { sink })).to.be.within(from.queued, to.queued);
    };
    within('push', before.events, after.events);
    within('redis', before.modernEvents, after.modernEvents);
  });
});
