/**
 * Fault drill: the manager's event sink goes away (its PULL socket closes).
 * Events queue up to the bound and are then dropped and counted; RPC stays
 * responsive and memory stays bounded.
 */
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { EventPublisher } from '../../src/events/publisher.js';
import { silentLogger } from '../../src/log.js';
import { methods } from '../../src/rpc/methods.js';
import { msgpackCodec } from '../../src/wire/codec.js';
import { eventually, freePort, onCleanup, requireEtcd, startAgent } from '../helpers/env.js';
import { sink } from '../helpers/sink.js';

describe('drill: the event sink disappears', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('keeps answering RPC while heartbeats to a vanished sink are dropped and counted', async () => {
    const s = await sink();
    const { agent, client, etcd } = await startAgent({}, async (ns) => {
      await ns.put('config/agent/heartbeat_interval').value('0.1');
      await ns.put('config/agent/event_queue_limit').value('5');
    });
    await etcd.put('nodes/manager').value('mgr');
    await etcd.put('nodes/manager/event_addr').value(s.addr);
    await s.next('instance_heartbeat', 0, 10_000);
    await s.close();

    const before = agent.stats().events.dropped;
    // 40 beats against a bound of 5 (+5 in the socket), a ping answered between each two: most were dropped, and counted
    for (let i = 0; i < 40; i++) {
      expect(await client.call(methods.ping, `p${i}`)).to.equal(`p${i}`);
      await agent.afterHeartbeats(1);
    }
    expect(agent.stats().events.dropped - before).to.be.greaterThan(15);
  });

  it('holds at most the bound for a vanished sink and drops the rest without blocking or growing memory', async () => {
    const port = await freePort();
    const pull = new zmq.Pull({ linger: 0 });
    await pull.bind(`tcp://127.0.0.1:${port}`);
    const limit = 100;
    const pub = new EventPublisher({ agentId: 'drill', codec: msgpackCodec, log: silentLogger(), queueLimit: limit });
    onCleanup(() => pub.close(0));
    pub.setSink(`tcp://127.0.0.1:${port}`);
    expect(pub.emit('warmup', [1])).to.equal(true);
    await eventually('the warm-up event to arrive', async () => (await pull.receive()).length === 3);
    pull.close();

    const payload = ['x'.repeat(1000)];
    const heapBefore = process.memoryUsage().heapUsed;
    const total = 200_000;
    const t0 = Date.now();
    let accepted = 0;
    for (let i = 0; i < total; i++) if (pub.emit('kernel_stats', payload)) accepted++;
    const emitMs = Date.now() - t0;
    const { dropped } = pub.snapshot(); // emit counts a drop as it refuses the event: nothing to wait for
    expect(accepted, 'events taken in: at most the bound (plus what the socket holds)').to.be.at.most(2 * limit);
    expect(dropped, `accepted ${accepted}`).to.be.at.least(total - accepted);
    // 200 000 events of 1 KB kept would be 200 MB; the bound keeps at most ~2 x limit of them
    const grownMiB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    expect(grownMiB, `heap grew ${grownMiB.toFixed(1)} MiB; emitting took ${emitMs} ms`).to.be.below(50);
  });
});
