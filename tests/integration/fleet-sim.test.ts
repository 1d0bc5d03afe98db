/**
 * fleet-sim in its short form: 10 simulated agents (the real registration,
 * lease, settings watches and heartbeat code) on a three-member etcd
 * cluster of the test's own: every one registers, beats to the sink and
 * applies one settings change exactly once.
 */
import { expect } from 'chai';
import { uniqueName } from '../helpers/env.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';
import { simulate } from '../fleet/sim.js';

describe('fleet-sim (short form)', function () {
  this.timeout(120_000);

  it('runs 10 simulated agents against a three-member cluster and reports the figures', async () => {
    const cluster = await etcdCluster(3, { metrics: 'extensive' });
    const r = await simulate({
      agents: 10,
      etcdAddr: cluster.addr,
      metricsUrls: cluster.members.map((m) => `http://127.0.0.1:${m.client}/metrics`),
      namespace: uniqueName('sim'),
      heartbeatSec: 0.5,
      leaseTtlSec: 3,
      measureSec: 3,
    });
    expect(r.agents).to.equal(10);
    expect(r.watchEventsPerChangePerAgent, 'each agent applies a change once').to.equal(1);
    expect(r.etcdRequestsPerSec).to.be.greaterThan(0);
    expect(r.sinkEventsPerSec, 'heartbeats reach the sink').to.be.greaterThan(0);
    expect(r.heartbeatBytesPerAgentPerMin).to.be.greaterThan(0);
    const ns = cluster.client().namespace(`/sorna/`);
    expect(
      (await ns.getAll().prefix('').keys()).filter((k) => k.includes('/nodes/agents/')),
      'every simulated agent deregistered',
    ).to.deep.equal([]);
  });
});
