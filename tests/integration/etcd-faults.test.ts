/**
 * An agent (the real CLI) on a three-member etcd cluster of the test's own
 * under faults: the leader SIGKILLed, that member lost for good, then the
 * quorum lost and regained. Throughout, RPC answers and heartbeats reach
 * the manager's sink; settings changed during and after the election arrive
 * exactly once; the quorum loss is said once, and when the quorum returns
 * the agent re-registers under a new lease and catches up on changes; an
 * agent started while the quorum is lost waits and starts when it returns.
 */
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { AgentClient } from '../../src/rpc/client.js';
import { loopbackAgentFlags, eventually, freePort, onCleanup, spawnAgent, tempScratch, uniqueName } from '../helpers/env.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';
import { sink } from '../helpers/sink.js';

describe('agent under etcd cluster faults', function () {
  this.timeout(240_000);

  it('keeps serving through a leader kill, a lost member and a lost quorum, and catches up when the quorum returns', async () => {
    const cluster = await etcdCluster(3);
    const s = await sink();
    const namespace = uniqueName('faults');
    const agentId = uniqueName('i-faults');
    const ns = cluster.client().namespace(`/sorna/${namespace}/`);
    await ns.put('config/agent/heartbeat_interval').value('0.5');
    await ns.put('config/agent/registration_lease_ttl').value('3');
    await ns.put('nodes/manager').value('mgr');
    await ns.put('nodes/manager/event_addr').value(s.addr);
    const port = await freePort();
    const proc = spawnAgent(await loopbackAgentFlags({ etcdAddr: cluster.addr, namespace, agentId, port }));
    await proc.waitFor(/"message":"agent running"/, 60_000);
    const client = new AgentClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 5000 });
    onCleanup(() => client.close());
    const lines = (re: RegExp, and = /./) =>
      proc
        .stderr()
        .split('\n')
        .filter((l) => re.test(l) && and.test(l)).length;
    const changes = () => lines(/setting changed; applied/, /"key":"exec_timeout"/);
    const alive = async (what: string) => {
      expect(await client.call(methods.ping, what), `RPC ${what}`).to.equal(what);
      const since = Date.now();
      await s.next('instance_heartbeat', since, 10_000);
    };
    const put = (key: string, value: string) =>
      eventually(
        `etcd to take ${key}=${value}`,
        async () => {
          await ns.put(key).value(value);
          return true;
        },
        60_000,
        200,
      );
    await alive('start');
    expect(await ns.get(`nodes/agents/${agentId}`).string()).to.equal('running');

    // 1. the leader SIGKILLed: a change made during the election, one after it
    const leader = await cluster.leader();
    await cluster.kill(leader);
    await put('config/agent/exec_timeout', '5');
    await alive('election');
    await eventually('the change made during the election', () => changes() === 1, 30_000, 100);
    await cluster.leader();
    // 2. that member lost for good: the agent works on the other two
    await put('config/agent/exec_timeout', '6');
    await eventually('the change made after the election', () => changes() === 2, 30_000, 100);
    await alive('two members');

    // 3. the quorum lost: RPC and heartbeats go on with the last settings, said once
    const survivor = [0, 1, 2].find((i) => i !== leader)!;
    const second = [0, 1, 2].find((i) => i !== leader && i !== survivor)!;
    await cluster.kill(second);
    await proc.waitFor(/etcd does not answer/, 30_000);
    await proc.waitFor(/lease of the registration was lost/, 30_000);
    await alive('no quorum 1');
    // an agent started while the quorum is lost waits for etcd, and starts when it returns
    const late = spawnAgent([
      '--etcd-addr',
      cluster.addr,
      '--namespace',
      namespace,
      '--agent-id',
      uniqueName('i-late'),
      '--agent-port',
      String(await freePort()),
      '--bind-host',
      '127.0.0.1',
      '--agent-host-override',
      '127.0.0.1',
      '--scratch-root',
      await tempScratch(),
      '--log-format',
      'json',
    ]);
    await late.waitFor(/waiting for etcd/, 30_000);
    await alive('no quorum 2');

    // 4. the quorum back: re-registered under a new lease, and changes arrive again
    await cluster.start(second);
    await proc.waitFor(/registration re-granted/, 60_000);
    await proc.waitFor(/etcd answers again/, 30_000);
    await eventually('the registration back', async () => (await ns.get(`nodes/agents/${agentId}`).string()) === 'running', 30_000, 200);
    await late.waitFor(/"message":"agent running"/, 60_000);
    await put('config/agent/exec_timeout', '7');
    await eventually('the change after the quorum returned', () => changes() === 3, 30_000, 100);
    await alive('after');
    expect(lines(/etcd does not answer/), 'the outage said once').to.equal(1);
    expect(lines(/lease of the registration was lost/), 'the lease loss said once').to.equal(1);
    expect(changes(), 'no change replayed').to.equal(3);
    expect(lines(/etcd watches? disconnected/), 'watch outages said once each, not per watch').to.be.at.most(3);
    expect(proc.stderr()).to.not.match(/"level":"error"/);
  });
});
