/**
 * Fault drill: etcd stops answering for 30 s (SIGSTOP of an etcd of the
 * test's own). The agent keeps answering RPC and sending heartbeats, logs the
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

describe('drill: etcd outage', function () {
  this.timeout(180_000);
  before(requireEtcd);

  it('keeps serving RPC and heartbeats through 30 s without etcd, logs it once, and is registered when etcd is back', async () => {
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
    while (Date.now() - t0 < 30_000) {
      expect(await agent.client.call(methods.ping, `p${pings}`)).to.equal(`p${pings}`);
      pings++;
      await waitRealTime(1000, 'the outage lasts 30 s: a ping a second shows RPC answering all through it');
    }
    const beats = s.events.filter((e) => e.name === 'instance_heartbeat' && e.at > t0 + 10_000);
    expect(beats.length, 'heartbeats in the last 20 s of the outage').to.be.greaterThan(5);
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
