/**
 * `/livez` and `/readyz` on the metrics port (docs/observability.rst,
 * "Health endpoints") of a real agent on an etcd of the test's own: ready
 * with every dependency, then not ready, naming the cause and its fix, while
 * draining, when Redis is set but unreachable, when one of the agent's own
 * firewall chains is removed and when etcd is gone; not live after the event
 * loop stalled for over a second.
 */
import { expect } from 'chai';
import { Etcd3 } from 'etcd3';
import { Agent } from '../../src/agent.js';
import { validateOptions } from '../../src/config/options.js';
import { firewallPlan, removeFirewall } from '../../src/containers/firewall.js';
import { kernelBridgeName } from '../../src/containers/kernel-network.js';
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import { agentOptions, eventually, freePort, onCleanup, requireEtcd, testLogger } from '../helpers/env.js';
import { ownEtcd } from '../helpers/own-etcd.js';

interface Probe {
  ok: boolean;
  error?: string;
  fix?: string;
}
interface Body {
  status: 'ok' | 'fail';
  failed: string[];
  checks: Record<string, Probe>;
  error?: string;
  fix?: string;
  event_loop_lag_ms?: number;
}

async function get(port: number, route: string): Promise<{ code: number; body: Body }> {
  const res = await fetch(`http://127.0.0.1:${port}${route}`);
  expect(res.headers.get('content-type')).to.equal('application/json');
  return { code: res.status, body: (await res.json()) as Body };
}

describe('health endpoints', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('/readyz: 200 with every dependency; 503 naming the cause and fix while draining, with Redis unreachable, a chain removed, etcd gone; /livez: 503 after a stalled loop', async () => {
    const own = await ownEtcd();
    const metricsPort = await freePort();
    const raw = await agentOptions({ etcdAddr: own.addr, metricsPort });
    const setup = new Etcd3({ hosts: `http://${own.addr}` });
    onCleanup(() => setup.close());
    const ns = setup.namespace(`/sorna/${raw.namespace}/`);
    const agent = new Agent(await validateOptions(raw), testLogger());
    onCleanup(() => agent.stop());
    await agent.start();
    const client = new AgentClient(`tcp://127.0.0.1:${raw.agentPort}`, { timeoutMs: 10_000 });
    onCleanup(() => client.close());

    const ready = await get(metricsPort, '/readyz');
    expect(ready.code, JSON.stringify(ready.body)).to.equal(200);
    expect(ready.body.failed).to.deep.equal([]);
    expect(Object.keys(ready.body.checks)).to.deep.equal(['etcd', 'docker', 'redis', 'firewall', 'drain']);
    const live = await get(metricsPort, '/livez');
    expect(live.code).to.equal(200);
    expect(live.body.event_loop_lag_ms).to.be.below(1000);

    await client.call(methods.drain, null);
    const draining = await get(metricsPort, '/readyz');
    expect(draining.code).to.equal(503);
    expect(draining.body.failed).to.deep.equal(['drain']);
    expect(draining.body.checks.drain!.error).to.match(/draining since/);
    expect(draining.body.checks.drain!.fix).to.match(/agentctl undrain/);
    await client.call(methods.undrain);
    expect((await get(metricsPort, '/readyz')).code).to.equal(200);

    // Redis set where nothing listens: events to modern managers cannot leave.
    await ns.put('config/redis/addr').value(`127.0.0.1:${await freePort()}`);
    const noRedis = await eventually('readyz to name redis', async () => {
      const r = await get(metricsPort, '/readyz');
      return r.body.failed.includes('redis') ? r : null;
    });
    expect(noRedis!.code).to.equal(503);
    expect(noRedis!.body.checks.redis!.fix).to.match(/config\/redis\/addr/);
    await ns.delete().key('config/redis/addr');
    await eventually('readyz to be ready again without Redis', async () => (await get(metricsPort, '/readyz')).code === 200);

    // One of this agent's own chains goes (never another's); the agent rebuilds them at its next start.
    const plan = firewallPlan(raw.agentId!, kernelBridgeName(raw.agentId!), 'allow');
    const input = plan.find((c) => c.chain.endsWith('-IN'))!;
    await removeFirewall([input]);
    const noChain = await get(metricsPort, '/readyz');
    expect(noChain.code).to.equal(503);
    expect(noChain.body.failed).to.deep.equal(['firewall']);
    expect(noChain.body.checks.firewall!.error).to.include(`filter/${input.chain}`);
    expect(noChain.body.checks.firewall!.fix).to.match(/restart the agent/);

    // The event loop stalls for 1.2 s (this test shares the agent's process): /livez says so afterwards.
    const asked = fetch(`http://127.0.0.1:${metricsPort}/livez`);
    const until = Date.now() + 1200;
    while (Date.now() < until); // a synchronous stall, on purpose
    const stalled = await asked;
    expect(stalled.status).to.equal(503);
    const stalledBody = (await stalled.json()) as Body;
    expect(stalledBody.failed).to.deep.equal(['event_loop']);
    expect(stalledBody.event_loop_lag_ms).to.be.at.least(1000);
    expect(stalledBody.fix).to.be.a('string');

    await own.kill();
    const noEtcd = await get(metricsPort, '/readyz');
    expect(noEtcd.code).to.equal(503);
    expect(noEtcd.body.failed).to.include('etcd');
    expect(noEtcd.body.checks.etcd!.fix).to.include(own.addr);
    expect(noEtcd.body.checks.docker!.ok).to.equal(true);
  });
});
