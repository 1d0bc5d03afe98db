/**
 * Multi-node sessions (docs/sessions.rst, "Multi-node sessions"): two
 * Docker engines in network namespaces of this machine joined in a swarm
 * (tests/helpers/swarm.ts), an agent in each, kernels on an attachable
 * overlay network the test makes as a manager does. One swarm serves the
 * whole file (it is the costly part), so the overlay's function and its
 * abuse sit together here:
 *
 * - a manager's network_name that is no session overlay (a bridge of the
 *   node, the kernel network, an overlay that is not attachable or lacks the
 *   session label, seen on the swarm's manager before the create or on a
 *   worker only after the start) is refused and leaves nothing; a node
 *   whose engine is in no swarm refuses multi-node sessions;
 * - code in a kernel on the overlay, as a hostile user would, sends to
 *   the swarm's ports (VXLAN, control, gossip) beyond its node, and to its
 *   own node: nothing arrives, while the same kernel reaches other ports
 *   beyond the node;
 * - a session of main1 and sub1 on the first node and sub2 on the second
 *   sees the cluster variables, runs a small job across the nodes over TCP
 *   by hostname, keeps the kernel network as its only way out (no
 *   docker_gwbridge leg), survives its agent's restart, and leaves the
 *   overlay free to remove once its kernels are destroyed.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { expect } from 'chai';
import type { Namespace } from 'etcd3';
import { modernMethods } from '../../src/rpc/modern-methods.js';
import { kernelNetworkName } from '../../src/containers/kernel-network.js';
import {
  containersOf,
  ETCD_ADDR,
  eventually,
  freePort,
  heldCleanups,
  onCleanup,
  remoteError,
  requireEtcd,
  spawnAgent,
  startAgent,
  tempScratch,
  testEtcd,
  uniqueName,
} from '../helpers/env.js';
import { ModernManager, modernKernelConfig } from '../helpers/modern-manager.js';
import { managerKeypair } from '../helpers/sessions.js';
import { consoleText } from '../helpers/run.js';
import { tcpProxy } from '../helpers/proxy.js';
import { importTinyImage, startSwarm, type Swarm, type SwarmEngine } from '../helpers/swarm.js';

/** An agent in an engine's namespace, with a modern manager's client to it. */
interface NodeAgent {
  agentId: string;
  namespace: string;
  scratch: string;
  rpcPort: number;
  m: ModernManager;
  stop(): Promise<void>;
}

describe('multi-node sessions over a Docker Swarm overlay network', function () {
  this.timeout(240_000);
  let swarm: Swarm | null = null;
  let lang = '';

  /** An agent on each engine, shared by the tests (the last one restarts the first); stopped after them. */
  let agents: [NodeAgent, NodeAgent];
  let stopAgents = async () => {};

  before(async function () {
    await requireEtcd();
    swarm = await startSwarm(2);
    lang = await importTinyImage(swarm.engines);
    const [e1, e2] = swarm.engines as [SwarmEngine, SwarmEngine];
    [agents, stopAgents] = await heldCleanups(() => Promise.all([agentOn(e1), agentOn(e2)]));
  });
  after(async () => {
    await stopAgents();
    await swarm?.teardown();
  });

  /** Starts an agent in the engine's namespace (a given id, namespace and scratch root: the same agent again). */
  async function agentOn(e: SwarmEngine, again?: Pick<NodeAgent, 'agentId' | 'namespace' | 'scratch'>): Promise<NodeAgent> {
    const [host, port] = ETCD_ADDR.split(':');
    const etcd = await tcpProxy({ host: host!, port: Number(port) }, { host: swarm!.hostAddr });
    const agentId = again?.agentId ?? uniqueName('i-test');
    const namespace = again?.namespace ?? uniqueName('test');
    const scratch = again?.scratch ?? (await tempScratch());
    if (!again) {
      const { ns } = testEtcd(namespace);
      await (ns as Namespace).put('config/agent/cpu_overcommit').value('4'); // two kernels of one core on a node of this 2-core machine
    }
    const rpcPort = await freePort();
    const a = spawnAgent(
      [
        ...['--etcd-addr', `${swarm!.hostAddr}:${etcd.port}`, '--namespace', namespace, '--agent-id', agentId],
        ...['--agent-port', String(rpcPort), '--bind-host', e.addr, '--agent-host-override', e.addr],
        ...['--scratch-root', scratch, '--log-format', 'json'],
      ],
      { DOCKER_HOST: `unix://${e.socket}` },
      ['nsenter', `--net=/var/run/netns/${e.ns}`],
    );
    await a.waitFor(/"message":"agent running"/, 60_000);
    const m = new ModernManager(`tcp://${e.addr}:${rpcPort}`);
    onCleanup(() => m.close());
    return {
      agentId,
      namespace,
      scratch,
      rpcPort,
      m,
      async stop() {
        m.close();
        a.child.kill('SIGTERM');
        await a.exited;
      },
    };
  }

  /** The config of a kernel of a multi-node session, the manager's session view in its environ (no agent sees the whole session). */
  const config = (host: string) => {
    const [, role, idx] = /^([a-z]+)(\d+)$/.exec(host)!;
    return modernKernelConfig({
      image: { ...(modernKernelConfig().image as Record<string, unknown>), canonical: `lablup/kernel-${lang}` },
      cluster_mode: 'multi-node',
      cluster_role: role,
      cluster_idx: Number(idx),
      cluster_hostname: host,
      environ: { BACKENDAI_CLUSTER_HOSTS: 'main1,sub1,sub2', BACKENDAI_CLUSTER_SIZE: '3', BACKENDAI_CLUSTER_MODE: 'multi-node' },
    });
  };

  /** create_kernels of a multi-node session's kernels on one agent, as 24.09 sends it. */
  const create = (a: NodeAgent, sessionId: string, overlay: string, kernels: Record<string, string>) =>
    a.m.client.call(
      modernMethods.create_kernels,
      sessionId,
      Object.values(kernels),
      Object.keys(kernels).map(config),
      {
        mode: 'multi-node',
        size: 3,
        replicas: { main: 1, sub: 2 },
        network_name: overlay,
        ssh_keypair: managerKeypair(),
        cluster_ssh_port_mapping: null,
      },
      Object.fromEntries(Object.values(kernels).map((id) => [id, { name: 'kernel-tiny', project: 'lablup', tag: lang.split(':')[1] }])),
    );

  /** Runs shell code in a kernel to its end; its stdout, trimmed (the test fails when it does not exit 0). */
  const sh = async (a: NodeAgent, sessionId: string, kernelId: string, code: string): Promise<string> => {
    const all = await a.m.executeAll(sessionId, kernelId, code, uniqueName('run'));
    expect(all.at(-1), `${kernelId}: ${consoleText(all, 'stderr')}`).to.include({ status: 'finished', exitCode: 0 });
    return consoleText(all, 'stdout').trim();
  };

  /** The kernels of an agent on an engine, by their containers' labels. */
  const kernelsOn = async (e: SwarmEngine, agentId: string) =>
    (await e.docker.listContainers({ all: true, filters: { label: [`io.compute-agent.agent=${agentId}`] } })).length;

  /** The manager's overlay network of a session on the swarm's manager node. */
  const makeOverlay = async (name: string, o: { attachable?: boolean; labelled?: boolean } = {}) => {
    await swarm!.engines[0]!.docker.createNetwork({
      Name: name,
      Driver: 'overlay',
      Attachable: o.attachable ?? true,
      Labels: o.labelled === false ? {} : { 'ai.backend.cluster-network': '1' },
    });
    onCleanup(() =>
      swarm!.engines[0]!.docker.getNetwork(name)
        .remove()
        .catch(() => undefined),
    );
  };

  it("refuses a manager's network that is no session overlay, before anything is made or once the kernel shows it, and leaves nothing", async () => {
    const [e1, e2] = swarm!.engines as [SwarmEngine, SwarmEngine];
    const [a1, a2] = agents;
    const refused = async (a: NodeAgent, e: SwarmEngine, network: string, why: RegExp, type = 'ParametersError') => {
      const err = await remoteError(create(a, uniqueName('sess'), network, { sub1: uniqueName('sub1') }));
      expect(err.remoteType, `${network}: ${err.remoteRepr}`).to.equal(type);
      expect(err.remoteRepr, network).to.match(why);
      expect(await kernelsOn(e, a.agentId), `kernels left after ${network}`).to.equal(0);
    };
    // A bridge of the node, even labelled as a session's, and the agent's own kernel network (another tenant's kernels).
    const bridge = uniqueName('bai-multinode-bridge');
    await e2.docker.createNetwork({ Name: bridge, Driver: 'bridge', Labels: { 'ai.backend.cluster-network': '1' } });
    onCleanup(() =>
      e2.docker
        .getNetwork(bridge)
        .remove()
        .catch(() => undefined),
    );
    await refused(a2, e2, bridge, /driver is bridge, not overlay; its scope is local, not swarm/);
    await refused(a2, e2, kernelNetworkName(a2.agentId), /cannot name a session network/);
    // An overlay that is not attachable: seen on the swarm's manager before the create; refused by the worker's engine at the start.
    const fixed = uniqueName('bai-multinode-fixed');
    await makeOverlay(fixed, { attachable: false });
    await refused(a1, e1, fixed, /it is not attachable/);
    await refused(a2, e2, fixed, /not manually attachable/, 'KernelCreationFailed');
    // An attachable overlay without the session label (an operator's own): a worker sees it only once the kernel joined it.
    const bare = uniqueName('bai-multinode-bare');
    await makeOverlay(bare, { labelled: false });
    await refused(a1, e1, bare, /lacks the label ai\.backend\.cluster-network=1/);
    await refused(a2, e2, bare, /lacks the label ai\.backend\.cluster-network=1/);
  });

  it("keeps a kernel on the overlay from the swarm's ports beyond its node and from its node, while it reaches other ports beyond", async () => {
    const e2 = swarm!.engines[1]!;
    const a2 = agents[1];
    const sessionId = uniqueName('sess');
    const overlay = `bai-multinode-${sessionId}`;
    await makeOverlay(overlay);
    const sub1 = uniqueName('sub1');
    await create(a2, sessionId, overlay, { sub1 });
    // Listeners of the test beyond the node (the host's address on the bridge between the nodes): the swarm's ports and two others.
    const host = swarm!.hostAddr;
    const tcp = new Map<number, number>();
    for (const port of [2377, 7946, 7950]) {
      tcp.set(port, 0);
      const server = net.createServer((c) => (tcp.set(port, tcp.get(port)! + 1), c.destroy()));
      await new Promise<void>((r) => server.listen(port, host, r));
      onCleanup(() => new Promise<void>((r) => server.close(() => r())));
    }
    const udp = new Map<number, number>();
    for (const port of [4789, 7946, 4790]) {
      udp.set(port, 0);
      const sock = dgram.createSocket('udp4').on('message', () => udp.set(port, udp.get(port)! + 1));
      await new Promise<void>((r) => sock.bind(port, host, () => r()));
      onCleanup(() => new Promise<void>((r) => sock.close(() => r())));
    }
    const tcpTry = (addr: string, port: number) =>
      `busybox nc -w 2 ${addr} ${port} </dev/null >/dev/null 2>&1 && echo ${addr}:${port}:open || echo ${addr}:${port}:closed`;
    // busybox's tftp sends a UDP request to any port; nothing answers, so it is cut short
    const udpSend = (port: number) =>
      `for n in 1 2 3; do busybox timeout 1 busybox tftp -g -r probe -l /tmp/probe ${host} ${port} >/dev/null 2>&1 & done; wait; echo udp:${port}:sent`;
    // every probe at once (a dropped one waits out its 2 s), their lines in order
    const probes = [
      ...[2377, 7946, 7950].map((p) => tcpTry(host, p)),
      ...[4789, 7946, 4790].map(udpSend),
      tcpTry(e2.addr, 2377), // its own node: the swarm's control port of its engine
      tcpTry(e2.addr, a2.rpcPort), // and the agent's RPC port
    ];
    const out = await sh(
      a2,
      sessionId,
      sub1,
      `${probes.map((p, n) => `( ${p} ) >/tmp/probe.${n} &`).join('\n')}\nwait\n${probes.map((_, n) => `busybox cat /tmp/probe.${n}`).join('\n')}`,
    );
    expect(out.split('\n')).to.deep.equal([
      `${host}:2377:closed`,
      `${host}:7946:closed`,
      `${host}:7950:open`,
      'udp:4789:sent',
      'udp:7946:sent',
      'udp:4790:sent',
      `${e2.addr}:2377:closed`,
      `${e2.addr}:${a2.rpcPort}:closed`,
    ]);
    expect(Object.fromEntries(tcp)).to.deep.equal({ 2377: 0, 7946: 0, 7950: 1 });
    expect(udp.get(4790), 'the control port beyond the node').to.be.greaterThan(0);
    expect({ 4789: udp.get(4789), 7946: udp.get(7946) }).to.deep.equal({ 4789: 0, 7946: 0 });
    await a2.m.client.call(modernMethods.destroy_kernel, sub1, sessionId, 'user-requested'); // the overlay's removal after the test needs it gone
  });

  it('refuses a multi-node session on a node whose engine is in no swarm, naming the fix, and leaves nothing', async () => {
    const t = await startAgent(); // this machine's own engine, in no swarm
    const m = new ModernManager(`tcp://127.0.0.1:${t.port}`);
    onCleanup(() => m.close());
    const err = await remoteError(
      m.client.call(
        modernMethods.create_kernels,
        uniqueName('sess'),
        [uniqueName('sub1')],
        [modernKernelConfig({ cluster_mode: 'multi-node', cluster_role: 'sub', cluster_idx: 1, cluster_hostname: 'sub1' })],
        { mode: 'multi-node', size: 2, replicas: { main: 1, sub: 1 }, network_name: 'bai-multinode-x', ssh_keypair: null },
        {},
      ),
    );
    expect(err.remoteRepr).to.match(/not in a swarm \(its state: inactive\).*docker swarm join/);
    expect(await containersOf(t.agentId)).to.have.length(0);
  });

  it('runs a job over main1 and sub1 on one node and sub2 on another, and each agent restart and destroy leaves the others', async () => {
    const [e1, e2] = swarm!.engines as [SwarmEngine, SwarmEngine];
    const sessionId = uniqueName('sess');
    const overlay = `bai-multinode-${sessionId}`;
    // The manager makes the session's overlay on a swarm manager node, as Backend.AI's overlay plugin does.
    await makeOverlay(overlay);
    const ids = { main1: uniqueName('main1'), sub1: uniqueName('sub1'), sub2: uniqueName('sub2') };
    const [a1, a2] = agents;
    const [r1, r2] = await Promise.all([
      create(a1, sessionId, overlay, { main1: ids.main1, sub1: ids.sub1 }),
      create(a2, sessionId, overlay, { sub2: ids.sub2 }),
    ]);
    expect([...r1, ...r2].map((r) => r.id)).to.deep.equal([ids.main1, ids.sub1, ids.sub2]);
    const agentOf = { main1: a1, sub1: a1, sub2: a2 };
    const run = (host: keyof typeof ids, code: string) => sh(agentOf[host], sessionId, ids[host], code);

    // What a kernel sees: its hostname, the manager's session view and its own place in it.
    expect(
      await run(
        'sub2',
        'echo "$(busybox hostname) $BACKENDAI_CLUSTER_MODE $BACKENDAI_CLUSTER_HOSTS $BACKENDAI_CLUSTER_ROLE$BACKENDAI_CLUSTER_IDX"',
      ),
    ).to.equal('sub2 multi-node main1,sub1,sub2 sub2');
    // Its legs: the kernel network (ports and egress, under the firewall) and the overlay; no docker_gwbridge.
    const [sub2] = await e2.docker.listContainers({ filters: { label: [`io.compute-agent.kernel-id=${ids.sub2}`] } });
    expect(Object.keys(sub2!.NetworkSettings.Networks).sort()).to.deep.equal([kernelNetworkName(a2.agentId), overlay].sort());

    // The job: sub1 (the node of main1) and sub2 (the other node) each serve the sum of squares of their half; main1 gathers.
    const serve = (port: number, lo: number, hi: number) =>
      `busybox setsid busybox nc -ll -p ${port} -e busybox sh -c 's=0; i=${lo}; while [ $i -le ${hi} ]; do s=$((s+i*i)); i=$((i+1)); done; echo $s' </dev/null >/dev/null 2>&1 &
echo serving`;
    expect(await run('sub1', serve(7000, 1, 50))).to.equal('serving');
    expect(await run('sub2', serve(7000, 51, 100))).to.equal('serving');
    /** Shell that reads `host`:`port` (retried while the server is not up yet) into $v. */
    const get = (host: string, port: number) =>
      `for n in $(busybox seq 100); do v=$(busybox nc -w 3 ${host} ${port} </dev/null) && [ -n "$v" ] && break; busybox sleep 0.1; done`;
    const gather = `${get('sub1', 7000)}; a=$v; ${get('sub2', 7000)}; echo "$a $v $((a+v))"`;
    expect(await run('main1', gather)).to.equal('42925 295425 338350');
    // and the other way, from the second node to the first
    expect(await run('main1', serve(7001, 1, 3))).to.equal('serving');
    expect(await run('sub2', `${get('main1', 7001)}; echo $v`)).to.equal('14');

    // The first node's agent restarts: it re-adopts main1 and sub1 on the overlay, and the job runs again;
    // then sub1 restarts (a new container, from what re-adoption read of the old one) and is sub1 on the overlay again.
    await a1.stop();
    const a1again = await agentOn(e1, a1);
    agentOf.main1 = agentOf.sub1 = a1again;
    expect(await run('main1', gather)).to.equal('42925 295425 338350');
    const tinyRef = { name: 'kernel-tiny', project: 'lablup', tag: lang.split(':')[1] };
    await a1again.m.client.call(modernMethods.restart_kernel, sessionId, ids.sub1, tinyRef, {});
    expect(await run('sub1', serve(7000, 1, 50))).to.equal('serving');
    expect(await run('main1', gather)).to.equal('42925 295425 338350');

    // Destroying sub2 leaves main1 and sub1; then they go, and the overlay is free to remove.
    await a2.m.client.call(modernMethods.destroy_kernel, ids.sub2, sessionId, 'user-requested');
    expect(await run('main1', 'v=$(busybox nc -w 3 sub1 7000 </dev/null); echo "$v"')).to.equal('42925');
    expect(await run('main1', 'busybox nc -w 3 sub2 7000 </dev/null >/dev/null 2>&1 && echo reached || echo gone')).to.equal('gone');
    for (const h of ['main1', 'sub1'] as const)
      await a1again.m.client.call(modernMethods.destroy_kernel, ids[h], sessionId, 'user-requested');
    await eventually('the overlay removed by the manager once the kernels left it', () =>
      e1.docker
        .getNetwork(overlay)
        .remove()
        .then(() => true),
    );
    expect((await kernelsOn(e1, a1again.agentId)) + (await kernelsOn(e2, a2.agentId))).to.equal(0);
    await eventually('the worker node forgets the overlay', async () =>
      (await e2.docker.listNetworks()).every((n: { Name: string }) => n.Name !== overlay),
    );
  });
});
