/**
 * A small fleet on network-namespace hosts (tests/helpers/fleet.ts): three
 * etcd members and three agents, each on a host of its own with an address
 * from 198.18.0.0/15, and a test manager (an EventReceiver and AgentClients)
 * in this process. The manager sees every agent start, register and beat;
 * it creates a kernel through one agent's address and runs code in it; that
 * agent host killed drops out of etcd within its lease TTL while the
 * others go on; the etcd leader killed, the agents keep beating and a
 * setting changed after the election reaches every agent; the killed agent
 * restarted registers again and re-adopts its kernel. Skipped without root
 * or `ip netns`.
 */
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { AgentClient } from '../../src/rpc/client.js';
import { SMALL_KERNEL, runCode } from '../soak/drive.js';
import { AGENT_BIN, eventually, onCleanup, removeContainersOf, tempScratch, uniqueName } from '../helpers/env.js';
import { appliedSetting, fleetAgent, killEtcdLeader, readyFleet, requireNetns } from '../helpers/fleet.js';

describe('fleet on network-namespace hosts', function () {
  this.timeout(240_000);

  it('three agents on a three-member etcd: seen by the manager, a kernel run, a dead host expires, a leader kill survived, the kernel re-adopted', async function () {
    try {
      requireNetns();
    } catch {
      this.skip();
    }
    const { fleet, etcdHosts, agentHosts, etcdAddr, namespace, ns, store, manager } = await readyFleet(3, {
      heartbeat_interval: '0.5',
      registration_lease_ttl: '3',
      // The hosts share the machine's one Docker and firewall: an agent in a namespace would install its chains
      // in that namespace's empty firewall, where no kernel bridge is (tests/security/kernel-network covers them).
      kernel_isolation: 'off',
    });

    const ids = agentHosts.map((_, i) => uniqueName(`i-fleet${i}`));
    const scratch = await Promise.all(agentHosts.map(() => tempScratch()));
    for (const id of ids) onCleanup(() => removeContainersOf(id));
    agentHosts.forEach((h, i) =>
      fleetAgent(fleet, h, { agentBin: AGENT_BIN, etcdAddr, namespace, agentId: ids[i]!, scratch: scratch[i]! }),
    );
    const seen = (name: string, id: string, after = 0) =>
      manager.events.some((e) => e.name === name && e.agentId === id && e.receivedAt >= after);
    for (const id of ids) await eventually(`instance_started of ${id}`, () => seen('instance_started', id), 60_000, 100);
    const registered = async () =>
      (await ns.getAll().prefix('nodes/agents/').keys()).filter((k) => !k.slice('nodes/agents/'.length).includes('/'));
    await eventually('three registrations', async () => (await registered()).length === 3, 30_000, 200);
    const clients = agentHosts.map((h) => new AgentClient(`tcp://${h.ip}:6001`, { timeoutMs: 5000 }));
    for (const c of clients) onCleanup(() => c.close());
    for (const [i, c] of clients.entries()) expect(await c.call(methods.ping, `p${i}`)).to.equal(`p${i}`);
    // a kernel on the agent that will be killed, created and run through that agent's address
    const kernelId = uniqueName('k');
    await clients[0]!.callWithTimeout(60_000, methods.create_kernel, kernelId, SMALL_KERNEL);
    expect(await runCode(clients[0]!, kernelId, 'print(6 * 7)')).to.equal('42\n');

    // one agent host killed: its registration expires within the lease TTL, the others go on
    await fleet.kill(agentHosts[0]!);
    await eventually(
      'the dead host to drop out of etcd',
      async () => !(await registered()).includes(`nodes/agents/${ids[0]}`),
      15_000,
      200,
    );
    const t0 = Date.now();
    for (const id of ids.slice(1))
      await eventually(`a heartbeat of ${id} after the kill`, () => seen('instance_heartbeat', id, t0), 10_000, 50);

    // the etcd leader killed: the agents keep beating; a setting changed after the election reaches each
    await killEtcdLeader(fleet, etcdHosts, store);
    const t1 = Date.now();
    await eventually(
      'a write after the election',
      async () => {
        await ns.put('config/agent/exec_timeout').value('9');
        return true;
      },
      30_000,
      200,
    );
    for (const [i, h] of agentHosts.slice(1).entries()) {
      await eventually(`the setting at ${ids[i + 1]}`, () => appliedSetting(h, 'exec_timeout'), 30_000, 100);
      await eventually(`a heartbeat of ${ids[i + 1]} after the leader kill`, () => seen('instance_heartbeat', ids[i + 1]!, t1), 10_000, 50);
    }

    // the killed agent restarted: it registers and starts again
    fleetAgent(fleet, agentHosts[0]!, { agentBin: AGENT_BIN, etcdAddr, namespace, agentId: ids[0]!, scratch: scratch[0]! });
    const t2 = Date.now();
    await eventually('the restarted agent', () => seen('instance_started', ids[0]!, t2), 60_000, 100);
    await eventually('three registrations again', async () => (await registered()).length === 3, 30_000, 200);
    expect(await clients[0]!.call(methods.ping, 'back')).to.equal('back');
    // and re-adopts its kernel, which still runs code
    expect((await clients[0]!.call(methods.list_kernels)).map((k) => k.id)).to.include(kernelId);
    expect(await runCode(clients[0]!, kernelId, 'print(6 * 8)')).to.equal('48\n');
  });
});
