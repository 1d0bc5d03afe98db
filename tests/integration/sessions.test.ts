/**
 * Sessions of several kernels (docs/sessions.rst) through a modern
 * (Callosum) client, against the real etcd, Docker and kernel image:
 * create_local_network, create_kernels with main1, sub1 and sub2 on it, the
 * cluster variables, names that resolve, ssh from main1 to sub2, a small
 * job spread over the three over TCP, one kernel destroyed leaving the others, destroy_local_network;
 * then the failure paths: a kernel that fails takes its session down with
 * it, and a restarted agent re-adopts a session's kernels on their network
 * and removes a session network left without kernels.
 */
import { expect } from 'chai';
import Docker from 'dockerode';
import type { Namespace } from 'etcd3';
import { modernMethods } from '../../src/rpc/modern-methods.js';
import { sessionBridgeName } from '../../src/containers/session-network.js';
import { firewallPlan, missingChains } from '../../src/containers/firewall.js';
import { kernelBridgeName } from '../../src/containers/kernel-network.js';
import { kernelIds, onCleanup, remoteError, requireEtcd, restartAgent, startAgent } from '../helpers/env.js';
import { ModernManager, testImageRef } from '../helpers/modern-manager.js';
import { addressOn, createSession, managerKeypair, memberConfig, newSession, py, squareServer, sshCommand } from '../helpers/sessions.js';

const docker = new Docker();

/** The network's labels and bridge interface, or null when it is gone. */
async function networkOf(name: string): Promise<{ bridge: string; labels: Record<string, string>; icc: string } | null> {
  try {
    const info = (await docker.getNetwork(name).inspect()) as {
      Name: string;
      Options: Record<string, string>;
      Labels: Record<string, string>;
    };
    if (info.Name !== name) return null;
    return {
      bridge: info.Options['com.docker.network.bridge.name']!,
      icc: info.Options['com.docker.network.bridge.enable_icc']!,
      labels: info.Labels,
    };
  } catch {
    return null;
  }
}

/** Three kernels of one core each on this 2-core machine. */
const overcommit = async (ns: Namespace): Promise<void> => {
  await ns.put('config/agent/cpu_overcommit').value('4');
};

function manager(port: number): ModernManager {
  const m = new ModernManager(`tcp://127.0.0.1:${port}`);
  onCleanup(() => m.close());
  return m;
}

describe('sessions of several kernels', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('runs a job over main1, sub1 and sub2 on their session network, and takes them down one by one', async () => {
    const t = await startAgent({}, overcommit);
    const m = manager(t.port);
    const s = newSession(['main1', 'sub1', 'sub2']);
    await m.client.call(modernMethods.create_local_network, s.network);
    await m.client.call(modernMethods.create_local_network, s.network); // the manager may repeat it
    const net = await networkOf(s.network);
    expect(net).to.deep.include({ bridge: sessionBridgeName(t.agentId, s.network), icc: 'true' });
    expect(net!.labels).to.include({ 'io.compute-agent.agent': t.agentId, 'io.compute-agent.network': 'session' });

    const results = await createSession(m, s);
    expect(results.map((r) => r.id)).to.deep.equal(Object.values(s.ids));

    // What each kernel sees: its hostname, the cluster variables, the others by name.
    const env = JSON.parse(
      await py(
        m,
        s,
        'sub2',
        `import json, os, socket
print(json.dumps({'hostname': socket.gethostname(), 'main1': socket.gethostbyname('main1'), **{k: v for k, v in os.environ.items() if k.startswith('BACKENDAI_CLUSTER_')}}))`,
      ),
    ) as Record<string, string>;
    expect(env).to.include({
      hostname: 'sub2',
      BACKENDAI_CLUSTER_MODE: 'single-node',
      BACKENDAI_CLUSTER_SIZE: '3',
      BACKENDAI_CLUSTER_REPLICAS: 'main:1,sub:2',
      BACKENDAI_CLUSTER_HOSTS: 'main1,sub1,sub2',
      BACKENDAI_CLUSTER_ROLE: 'sub',
      BACKENDAI_CLUSTER_IDX: '2',
      BACKENDAI_CLUSTER_HOST: 'sub2',
      BACKENDAI_CLUSTER_LOCAL_RANK: '2',
    });
    expect(env.main1).to.match(/^\d+\.\d+\.\d+\.\d+$/);

    // ssh among them, with the key pair the agent made (the call sent none): the command runs as code in sub2 would.
    expect(await py(m, s, 'main1', sshCommand('sub2', 'hostname; echo $BACKENDAI_CLUSTER_ROLE $BACKENDAI_CLUSTER_IDX'))).to.equal(
      'sub2\nsub 2\n',
    );

    // The job: sub1 and sub2 each sum the squares of half the range, main1 sends the halves and gathers.
    for (const host of ['sub1', 'sub2']) expect(await py(m, s, host, squareServer(7000))).to.equal('listening\n');
    const gathered = await py(
      m,
      s,
      'main1',
      `import socket
def part(host, a, b):
    with socket.create_connection((host, 7000), 5) as c:
        c.sendall(f'{a} {b}\\n'.encode())
        return int(c.makefile().readline())
print(part('sub1', 0, 50000) + part('sub2', 50000, 100000))`,
    );
    expect(Number(gathered)).to.equal(Array.from({ length: 100000 }, (_, i) => i * i).reduce((a, b) => a + b, 0));

    // One kernel destroyed: the others run on and still reach each other; its name no longer resolves.
    await m.client.call(modernMethods.destroy_kernel, s.ids.sub2!, s.sessionId, 'user-requested', false);
    expect(await kernelIds(t.client)).to.have.members([s.ids.main1, s.ids.sub1]);
    expect(
      await py(
        m,
        s,
        'main1',
        `import socket
with socket.create_connection(('sub1', 7000), 5) as c:
    c.sendall(b'0 4\\n'); print(c.makefile().readline().strip())
try:
    socket.gethostbyname('sub2'); print('sub2 resolves')
except OSError:
    print('sub2 gone')`,
      ),
    ).to.equal('14\nsub2 gone\n');

    // The network is refused while kernels are on it, and goes once they are gone.
    const busy = await remoteError(m.client.call(modernMethods.destroy_local_network, s.network));
    expect(busy.message).to.match(/still has 2 kernel\(s\) on it: destroy the session's kernels first/);
    for (const host of ['main1', 'sub1']) await m.client.call(modernMethods.destroy_kernel, s.ids[host]!, s.sessionId, null, false);
    await m.client.call(modernMethods.destroy_local_network, s.network);
    expect(await networkOf(s.network)).to.equal(null);
    await m.client.call(modernMethods.destroy_local_network, s.network); // gone already: fine
  });

  it('rolls a session back whole when one kernel fails, and re-adopts a session on its network after a restart', async () => {
    const t = await startAgent({}, overcommit);
    const m = manager(t.port);

    // sub1 asks for a device this agent lacks: main1, created meanwhile, is destroyed too.
    const failing = newSession(['main1', 'sub1']);
    await m.client.call(modernMethods.create_local_network, failing.network);
    const err = await remoteError(
      createSession(m, failing, { sub1: memberConfig('sub1', { resource_slots: { cpu: '1', mem: '268435456', 'cuda.device': '1' } }) }),
    );
    expect(err.message).to.match(/cuda\.device/);
    expect(await kernelIds(t.client)).to.deep.equal([]);

    // A session on its network, and a network whose session never came (as a crash between the two calls leaves it).
    const s = newSession(['main1', 'sub1']);
    await m.client.call(modernMethods.create_local_network, s.network);
    await createSession(m, s, {}, s.network, managerKeypair()); // the manager's key pair, as 24.09 sends it
    // restart_kernel of sub1 with a full config: the new container is sub1 on the session network, with its cluster variables.
    await m.client.call(modernMethods.restart_kernel, s.sessionId, s.ids.sub1!, testImageRef(), memberConfig('sub1'));
    const sub1 = await addressOn(s.ids.sub1!, s.network);
    expect(sub1, 'the new sub1 is on the session network').to.not.equal(null);
    expect(await py(m, s, 'main1', `import socket; print(socket.gethostbyname('sub1'))`)).to.equal(`${sub1!.ip}\n`);
    expect(await py(m, s, 'sub1', `import os, socket; print(socket.gethostname(), os.environ['BACKENDAI_CLUSTER_HOSTS'])`)).to.equal(
      'sub1 main1,sub1\n',
    );
    expect(await py(m, s, 'sub1', squareServer(7001))).to.equal('listening\n');

    // A clean stop with only session kernels running keeps the chains that cover them.
    await t.agent.stop();
    expect(await missingChains(firewallPlan(t.agentId, kernelBridgeName(t.agentId), 'allow')), 'chains after the stop').to.deep.equal([]);
    const again = await restartAgent(t);
    const m2 = manager(again.agent.options.agentPort);
    expect(await kernelIds(again.client)).to.have.members(Object.values(s.ids));
    expect(await networkOf(failing.network), 'a session network without kernels is removed at start').to.equal(null);
    expect(await networkOf(s.network), "the re-adopted session's network stays").to.not.equal(null);
    expect(
      await py(
        m2,
        s,
        'main1',
        `import socket
with socket.create_connection(('sub1', 7001), 5) as c:
    c.sendall(b'0 3\\n'); print(c.makefile().readline().strip())`,
      ),
    ).to.equal('5\n');
    // A restart after the agent's own keeps the environ the kernel had (read back from its container), and ssh
    // with the manager's key pair goes from the restarted main1 to the restarted sub1.
    await m2.client.call(modernMethods.restart_kernel, s.sessionId, s.ids.main1!, testImageRef(), {});
    expect(
      await py(m2, s, 'main1', `import os; print(os.environ['BACKENDAI_CLUSTER_HOSTS'], os.environ['BACKENDAI_CLUSTER_ROLE'])`),
    ).to.equal('main1,sub1 main\n');
    expect(await py(m2, s, 'main1', sshCommand('sub1', 'hostname'))).to.equal('sub1\n');
  });
});
