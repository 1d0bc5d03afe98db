/**
 * Kernels are tenants (docs/security.rst, "Kernel networks"): code in one
 * kernel tries, as a hostile user would, every way to another kernel and to
 * the host (the other kernel's address and its published ports, the agent's
 * RPC port with `--bind-host *`, any port of the host, through the bridge's
 * gateway, the host's addresses and the link to another host), and each
 * attempt fails; what is legitimate still works: a host in a network
 * namespace of the test's own (198.18.0.0/15) reaches every published port
 * as the 2018 manager's terminal does, and a kernel reaches that host unless
 * `kernel_egress` is `deny`. The agent's firewall chains are there while it
 * runs, rebuilt at a start, gone at a clean stop; where iptables cannot be
 * used the agent refuses to start, unless `kernel_isolation` is off, which
 * its heartbeats then say.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import Docker from 'dockerode';
import { methods } from '../../src/rpc/methods.js';
import { agentFieldKey } from '../../src/config/etcd-keys.js';
import { listChains, listRules } from '../../src/adapters/iptables.js';
import { firewallPlan, missingChains } from '../../src/containers/firewall.js';
import { kernelBridgeName, kernelNetworkName } from '../../src/containers/kernel-network.js';
import {
  eventually,
  freePort,
  loopbackAgentFlags,
  requireEtcd,
  restartAgent,
  spawnAgent,
  startAgent,
  TEST_IMAGE_LANG,
  testEtcd,
  uniqueName,
} from '../helpers/env.js';
import { netnsHost } from '../helpers/netns.js';
import { derivedImage } from '../helpers/derived-image.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { hostAddresses, hostListener, probeCode } from '../helpers/host-probe.js';

const config = { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 128 }, mounts: [], environ: {} };
const RUNNER_PORTS = ['repl_in_port', 'repl_out_port', 'stdin_port', 'stdout_port'] as const;

async function probeFrom(client: Awaited<ReturnType<typeof startAgent>>['client'], id: string, targets: Array<[string, number]>) {
  const out = await runToEnd(client, id, probeCode(targets));
  expect(out.at(-1)).to.include({ status: 'finished', exitCode: 0 });
  return JSON.parse(consoleText(out, 'stdout')) as Record<string, string>;
}

/** The container of a kernel: its address on the kernel network and the network's gateway. */
async function kernelAddress(agentId: string, kernelId: string): Promise<{ ip: string; gateway: string }> {
  const docker = new Docker();
  const [c] = await docker.listContainers({ filters: { label: [`io.compute-agent.kernel-id=${kernelId}`] } });
  const info = await docker.getContainer(c!.Id).inspect();
  const onNet = info.NetworkSettings.Networks[kernelNetworkName(agentId)];
  expect(onNet, 'the kernel is on the agent kernel network').to.not.equal(undefined);
  return { ip: onNet!.IPAddress, gateway: onNet!.Gateway };
}

/** A ZMTP 3 greeting's first 10 bytes (signature and major version). */
const ZMTP_HELLO = Buffer.from([0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f]);

/**
 * The first bytes (hex) each TCP port answers its `hello` with, read from
 * inside the namespace host, all at once: `{port: hex}`, or `error <code>` /
 * `timeout` (3 s).
 */
async function greetingsFrom(
  host: Awaited<ReturnType<typeof netnsHost>>,
  addr: string,
  probes: Array<[port: number, hello: Buffer]>,
): Promise<Record<string, string>> {
  const list = JSON.stringify(probes.map(([port, hello]) => [port, hello.toString('hex')]));
  const code = `
    const out = {};
    const one = ([port, hello]) => new Promise((done) => {
      const s = require('net').connect(port, '${addr}', () => s.write(Buffer.from(hello, 'hex')));
      const end = (v) => { out[port] ??= v; s.destroy(); done(); };
      s.once('data', (d) => end(d.subarray(0, 10).toString('hex')));
      s.on('error', (e) => end('error ' + e.code));
      setTimeout(() => end('timeout'), 3000).unref();
    });
    Promise.all(${list}.map(one)).then(() => console.log(JSON.stringify(out)));`;
  return JSON.parse(await host.run(process.execPath, ['-e', code])) as Record<string, string>;
}

describe('kernel networks: kernels are tenants', function () {
  this.timeout(180_000);
  before(requireEtcd);

  it('keeps a kernel from another kernel and from every port of the host, lets it out, and lets the manager in', async () => {
    const outside = await netnsHost();
    await outside.listen(8080);
    const listener = await hostListener();
    const serviceLang = await derivedImage('http-files:http:9101', {});
    const t = await startAgent({ bindHost: '*' }, async (etcd) => {
      await etcd.put('config/agent/kernel_publish_addr').value('0.0.0.0'); // the manager reaches published ports from outside
    });
    const a = uniqueName('ka');
    const b = uniqueName('kb');
    await t.client.callWithTimeout(60_000, methods.create_kernel, a, config);
    // B's image has a service port with an app that serves files over HTTP.
    const bInfo = await t.client.callWithTimeout(60_000, methods.create_kernel, b, { ...config, lang: serviceLang });
    expect(await t.client.call(methods.start_service, b, 'http-files', {})).to.deep.equal({ status: 'started' });
    const servicePort = bInfo.service_ports[0]!.host_port;
    const bPorts = [...RUNNER_PORTS.map((p) => bInfo[p]), servicePort];
    const { ip: bIp, gateway } = await kernelAddress(t.agentId, b);
    const hostAddrs = [gateway, ...hostAddresses()];
    expect(hostAddrs).to.include(outside.nodeAddr);

    const attacks: Array<[string, number]> = [
      ...[2000, 2001, 2002, 2003].map((p): [string, number] => [bIp, p]),
      ...hostAddrs.flatMap((h) => [...bPorts, t.port, listener.port].map((p): [string, number] => [h, p])),
    ];
    const control: [string, number] = [outside.addr, 8080];
    // A port where nothing listens on the node, probed on each host address: it opens only for a connection that left
    // the node (an address another test's network held when the list was made, gone by the probe, is routed out, and
    // egress is allowed; this machine's uplink answers any address), which then says nothing of the host.
    const closed = await freePort();
    const result = await probeFrom(t.client, a, [...attacks, ...hostAddrs.map((h): [string, number] => [h, closed]), control]);
    expect(result[`${control[0]}:${control[1]}`], 'a host beyond the node is reachable (kernel_egress allow)').to.equal('open');
    const gone = new Set(hostAddrs.filter((h) => result[`${h}:${closed}`] === 'open'));
    expect(gone.has(gateway), "the kernel network's gateway is the node").to.equal(false);
    const reached = attacks
      .filter(([h]) => !gone.has(h))
      .map(([h, p]) => `${h}:${p}`)
      .filter((k) => result[k] === 'open');
    const firewall = reached.length
      ? ['filter', 'mangle'].map((t) => execFileSync('iptables', ['-w', '-t', t, '-S'], { encoding: 'utf8' })).join('\n')
      : '';
    expect(reached, `what kernel A reached; the firewall then:\n${firewall}`).to.deep.equal([]);
    expect(listener.accepted(), 'connections the host listener accepted from the kernel').to.equal(0);

    // The manager, from another host, reaches every published runner port of B (it speaks ZMTP: a greeting comes back)
    // and its service port (the app speaks HTTP).
    const runnerPorts = RUNNER_PORTS.map((p) => bInfo[p]);
    const answers = await greetingsFrom(outside, outside.nodeAddr, [
      ...runnerPorts.map((p): [number, Buffer] => [p, ZMTP_HELLO]),
      [servicePort, Buffer.from('GET / HTTP/1.0\r\n\r\n')],
    ]);
    for (const port of runnerPorts) expect(answers[port], `published port ${port} from outside`).to.match(/^ff0{14}017f/);
    expect(answers[servicePort], 'the service port from outside').to.match(/^485454502f/); // "HTTP/"

    // B still works for its owner.
    expect(consoleText(await runToEnd(t.client, b, 'print(6*7)'), 'stdout')).to.equal('42\n');
  });

  it('with kernel_egress deny, a kernel reaches nothing beyond its own container, and still runs code', async () => {
    const outside = await netnsHost();
    await outside.listen(8080);
    const t = await startAgent({}, async (etcd) => {
      await etcd.put('config/agent/kernel_egress').value('deny');
    });
    const k = uniqueName('k');
    await t.client.callWithTimeout(60_000, methods.create_kernel, k, config);
    const result = await probeFrom(t.client, k, [[outside.addr, 8080]]);
    expect(result[`${outside.addr}:8080`]).to.equal('timeout');
  });

  it('installs its chains at start, rebuilds them at the next, makes its network for the first kernel, and removes both at a clean stop', async () => {
    const t = await startAgent();
    const plan = firewallPlan(t.agentId, kernelBridgeName(t.agentId), 'allow');
    expect(await missingChains(plan)).to.deep.equal([]);
    for (const c of plan) {
      // First among the rules of others than agents (Docker's jumps): agents of other tests hook beside it at any time.
      const rules = await listRules(c.table, c.from);
      const at = rules.indexOf(['-A', c.from, ...c.hook].join(' '));
      const firstOther = rules.findIndex((r) => !/ -j CA-[^ ]+$/.test(r));
      expect(at, `${c.chain} is hooked`).to.be.at.least(0);
      if (firstOther >= 0) expect(at, `${c.chain} is hooked before ${rules[firstOther]}`).to.be.below(firstOther);
    }
    const network = () =>
      new Docker()
        .getNetwork(kernelNetworkName(t.agentId))
        .inspect()
        .then(
          () => 'present',
          (e: { statusCode?: number }) => (e.statusCode === 404 ? 'absent' : `error ${e.statusCode}`),
        );
    expect(await network(), 'no network before the first kernel').to.equal('absent');
    // Someone flushes a chain; the next start rebuilds it.
    const fwd = plan.find((c) => c.chain.endsWith('-FWD'))!;
    execFileSync('iptables', ['-w', '-F', fwd.chain]);
    const again = await restartAgent(t);
    expect(await listRules(fwd.table, fwd.chain)).to.have.length(fwd.rules.length);
    const k = uniqueName('k');
    await again.client.callWithTimeout(60_000, methods.create_kernel, k, config);
    expect(await network()).to.equal('present');
    await kernelAddress(t.agentId, k); // on it
    await again.client.callWithTimeout(60_000, methods.destroy_kernel, k);
    await again.agent.stop();
    for (const table of ['filter', 'mangle'] as const)
      expect((await listChains(table)).filter((c) => plan.some((p) => p.chain === c))).to.deep.equal([]);
    expect(await network()).to.equal('absent');
  });

  it('refuses to start where the chains cannot be installed, and with kernel_isolation off starts and says so', async () => {
    const namespace = uniqueName('test');
    const agentId = uniqueName('i-noipt');
    const { ns } = testEtcd(namespace);
    const noSbin = { PATH: '/usr/bin:/bin' }; // iptables lives in /usr/sbin: the command is not found, a real failure
    const refused = spawnAgent(await loopbackAgentFlags({ namespace, agentId, port: await freePort() }), noSbin);
    expect(await refused.exited).to.not.equal(0);
    expect(refused.stderr()).to.match(/cannot install the firewall chains[\s\S]*kernel_isolation off/);

    await ns.put('config/agent/kernel_isolation').value('off');
    const port = await freePort();
    const off = spawnAgent(await loopbackAgentFlags({ namespace, agentId, port }), noSbin);
    await off.waitFor(/kernel_isolation is off/, 30_000);
    const beat = await eventually(
      'a heartbeat recorded in etcd',
      async () => {
        const raw = await ns.get(agentFieldKey(agentId, 'heartbeat')).string();
        if (!raw) throw new Error('none yet');
        return raw;
      },
      30_000,
    );
    expect(beat).to.include('"kernel_isolation":"off"');
    off.child.kill('SIGTERM');
    await off.exited;
  });
});
