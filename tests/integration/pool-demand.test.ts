/**
 * Warm pools sized from the cluster's pending demand, live: two agents in
 * one namespace split `config/agent/pool/demand` (each pool grows to its
 * share), and when one stops cleanly (its lease revoked) the other takes
 * its share. Uses the shared etcd through a namespace of the test's own.
 */
import { expect } from 'chai';
import { eventually, requireEtcd, startAgent, testEtcd, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { poolSettled, putPool } from '../helpers/pool.js';

const LANG = TEST_IMAGE_LANG;

describe('warm pool from the cluster demand', function () {
  this.timeout(240_000);
  before(requireEtcd);

  it('splits the demand between two agents, and the one left takes the share of one that stops', async () => {
    const namespace = uniqueName('demand');
    const { ns } = testEtcd(namespace);
    await putPool(ns, {}, { demand_window: '0' });
    await ns.put('config/agent/heartbeat_interval').value('0.5');
    const a = await startAgent({ namespace, agentId: uniqueName('i-da') });
    const b = await startAgent({ namespace, agentId: uniqueName('i-db') });
    // both registered with a heartbeat record (their capacity) before the demand appears
    await eventually(
      'both heartbeat records',
      async () => (await ns.getAll().prefix('nodes/agents/').keys()).filter((k) => k.endsWith('/heartbeat')).length === 2,
      20_000,
      100,
    );
    await ns.put('config/agent/pool/demand').value(JSON.stringify({ [LANG]: { small: 2 } }));
    await poolSettled(a.agent, 1);
    await poolSettled(b.agent, 1);
    expect(a.agent.warmPool!.sizes().find((r) => r.type === 'small')?.idle).to.equal(1);

    await b.agent.stop(); // a clean stop revokes its lease: it leaves the split at once
    await poolSettled(a.agent, 2);
    await ns.delete().key('config/agent/pool/demand');
    await poolSettled(a.agent, 0);
  });
});
