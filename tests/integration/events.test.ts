/**
 * Events to the manager over a real PULL socket: the sink appears in etcd
 * after the agent started, heartbeats carry the documented fields, the
 * interval follows etcd live, and the sink may move.
 */
import { expect } from 'chai';
import { uncompressSync } from 'snappy';
import Docker from 'dockerode';
import { msgpackCodec } from '../../src/wire/codec.js';
import { sink } from '../helpers/sink.js';
import { eventually, requireEtcd, startAgent, TEST_IMAGE_LANG, TEST_IMAGE_PREFIX } from '../helpers/env.js';
import { capturedLog } from '../helpers/log-capture.js';

describe('events to the manager', () => {
  before(requireEtcd);

  it('attaches to a sink that appears after start and sends instance_started and heartbeats', async () => {
    const { etcd, agentId, agent } = await startAgent({}, async (ns, raw) => {
      await ns.put(`nodes/agents/${raw.agentId}/config/heartbeat_interval`).value('0.2');
    });
    const s = await sink();
    await eventually('a heartbeat in etcd (the agent beats with no sink)', () => etcd.get(`nodes/agents/${agentId}/heartbeat`));
    expect(s.events).to.have.length(0);
    await etcd.put('nodes/manager').value('mgr-1');
    await etcd.put('nodes/manager/event_addr').value(s.addr);

    const started = await s.next('instance_started');
    expect(started.agentId).to.equal(agentId);
    expect(started.args).to.deep.equal([]);
    const hb = await s.next('instance_heartbeat');
    const info = hb.args[0] as Record<string, unknown>;
    expect(info).to.include({ ip: '127.0.0.1', region: 'local', addr: agent.address, gpu_slots: 0 });
    expect(info.cpu_slots).to.be.a('number').and.to.be.at.least(1);
    expect(info.mem_slots).to.be.a('number').and.to.be.above(100); // MiB
    const images = msgpackCodec.decode(uncompressSync(info.images as Buffer) as Buffer) as Array<[string, string]>;
    const image = await new Docker().getImage(TEST_IMAGE_PREFIX + TEST_IMAGE_LANG).inspect();
    expect(images).to.deep.include([TEST_IMAGE_LANG, image.Id]);

    // 0.2 s from the node-level setting: five more beats take about a second, not the default 3 s each
    const t0 = Date.now();
    const fifth = await s.next('instance_heartbeat', t0, 5000, 5);
    expect(fifth.at - t0).to.be.within(700, 2500);
  });

  it('follows a change of the heartbeat interval and a move of the sink, and says goodbye on stop', async () => {
    const first = await sink();
    const { etcd, agent, agentId } = await startAgent({}, async (ns) => {
      await ns.put('nodes/manager/event_addr').value(first.addr);
      await ns.put('config/agent/heartbeat_interval').value('5');
    });
    await first.next('instance_heartbeat');
    await etcd.put(`nodes/agents/${agentId}/config/heartbeat_interval`).value('0.1');
    const t0 = Date.now();
    await first.next('instance_heartbeat', t0 + 1, 2000); // would take 5 s without the live change

    const second = await sink();
    await etcd.put('nodes/manager/event_addr').value(second.addr);
    await second.next('instance_started');
    await second.next('instance_heartbeat');

    await agent.stop();
    const bye = await second.next('instance_terminated');
    expect(bye.args).to.deep.equal(['shutdown']);
  });

  it('keeps a bad sink address out and says so, staying on the good one', async () => {
    const s = await sink();
    const log = capturedLog();
    const { etcd } = await startAgent(
      {},
      async (ns) => {
        await ns.put('nodes/manager/event_addr').value(s.addr);
        await ns.put('config/agent/heartbeat_interval').value('0.1');
      },
      log.logger,
    );
    await s.next('instance_heartbeat');
    await etcd.put('nodes/manager/event_addr').value('not an address');
    const said = await log.waitFor(/ignoring a bad event sink address in etcd/);
    expect(JSON.parse(said)).to.include({ level: 'error', key: 'nodes/manager/event_addr' });
    const t = Date.now();
    await s.next('instance_heartbeat', t, 5000, 2); // still beating to the good sink after it said so
  });
});
