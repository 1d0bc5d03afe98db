/**
 * Fault drill: etcd stops answering for 30 s in `npm run drills` (its only
 * place: DRILLS_ONLY of .mocharc.cjs), 16 s when the file is run alone
 * (DRILL_ETCD_OUTAGE_S; SIGSTOP of an etcd of the test's own): past
 * the 5 s registration check and the 5 s call deadline, so the outage is
 * noticed and heartbeats are seen going on after it. The agent keeps answering RPC and sending heartbeats, logs the
 * outage once, and once etcd is back keeps (and if need be writes again) its
 * registration `nodes/agents/<id>` = running.
 */
import { expect } from 'chai';
import { Etcd3 } from 'etcd3';
import { methods } from '../../src/rpc/methods.js';
import { eventually, onCleanup, requireEtcd } from '../helpers/env.js';
import { waitRealTime } from '../helpers/real-time.js';
import { ownEtcd } from '../helpers/own-etcd.js';
import { sink } from '../helpers/sink.js';
import { childAgent } from '../soak/drive.js';

/** Seconds without etcd: at least 14 (the outage noticed within 10 s, then over 5 heartbeats at 0.5 s counted after it). */
const OUTAGE_S = Math.max(Number(process.env.DRILL_ETCD_OUTAGE_S) || 16, 14);

describe('drill: etcd outage', function () {
  this.timeout(180_000);
  before(requireEtcd);

  it(`keeps serving RPC and heartbeats through ${OUTAGE_S} s without etcd, logs it once, and is registered when etcd is back`, async () => {
    const etcd = await ownEtcd();
    const s = await sink();
    const raw = new Etcd3({ hosts: `http://${etcd.addr}` });
    onCleanup(() => raw.close());
    const agent = await childAgent({ etcdAddr: etcd.addr, settings: { heartbeat_interval: '0.5' } });
    const ns = raw.namespace(`/sorna/${agent.namespace}/`);
    await ns.put('nodes/manager').value('mgr');
    await ns.put('nodes/manager/event_addr').value(s.addr);
    await s.next('instance_heartbeat', 0, 10_000);
    expect(await ns.get(`nodes/agents/${agent.agentId}`).string()).to.equal('running');

    etcd.pause();
    const t0 = Date.now();
    let pings = 0;
    while (Date.now() - t0 < OUTAGE_S * 1000) {
      expect(await agent.client.call(methods.ping, `p${pings}`)).to.equal(`p${pings}`);
      pings++;
      await waitRealTime(1000, 'the outage lasts 30 s: a ping a second shows RPC answering all through it');
    }
    const beats = s.events.filter((e) => e.name === 'instance_heartbeat' && e.at > t0 + 10_000);
    expect(beats.length, `heartbeats in the last ${OUTAGE_S - 10} s of the outage`).to.be.greaterThan(5);
    etcd.resume();

    await agent.proc.waitFor(/etcd answers again/, 30_000);
    const log = agent.proc.stderr();
    expect(log.match(/etcd does not answer/g), 'the outage is logged once').to.have.length(1);
    expect(log).to.not.match(/"level":"error"/);
    // re-registration: a registration lost while etcd was away is written again
    await ns.delete().key(`nodes/agents/${agent.agentId}`);
    await eventually('re-registration', async () => (await ns.get(`nodes/agents/${agent.agentId}`).string()) === 'running', 20_000, 200);
    expect(await agent.client.call(methods.ping, 'after')).to.equal('after');
  });
});
