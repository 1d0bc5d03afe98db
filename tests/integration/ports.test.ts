/**
 * The managed host port range against the real Docker engine and etcd
 * (docs/service-ports.rst): every published port of a kernel comes from
 * container_port_range, first in first out; none is given out again within
 * port_reuse_cooldown; 6 create/destroy cycles (twice round the range) on 12 ports leak none; a
 * create with too few free ports fails taking nothing; a port a listener of
 * the test holds is skipped; ports survive an agent SIGKILL and re-adoption.
 */
import net from 'node:net';
import { expect } from 'chai';
import Docker from 'dockerode';
import { Agent } from '../../src/agent.js';
import { validateOptions } from '../../src/config/options.js';
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import { type KernelInfo } from '../../src/rpc/results.js';
import {
  loopbackAgentFlags,
  agentOptions,
  containersOf,
  onCleanup,
  remoteError,
  removeContainersOf,
  requireEtcd,
  spawnAgent,
  startAgent,
  testEtcd,
  testLogger,
  TEST_IMAGE_LANG,
  uniqueName,
} from '../helpers/env.js';
import { homesIn } from '../helpers/leftovers.js';

const docker = new Docker();
const config = { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 256, gpu_slot: 0 }, mounts: [], environ: {} };
const portsOf = (i: KernelInfo) => [i.repl_in_port, i.repl_out_port, i.stdin_port, i.stdout_port];

/** A block of 12 ports below the ephemeral range, a different one for each test run. */
function testRange(): { lo: number; hi: number; text: string } {
  const lo = 21000 + 12 * Math.floor(Math.random() * 600);
  return { lo, hi: lo + 11, text: `${lo}-${lo + 11}` };
}

async function publishedOf(containerId: string): Promise<number[]> {
  const c = await docker.getContainer(containerId).inspect();
  return Object.values(c.NetworkSettings.Ports)
    .map((b) => Number(b![0]!.HostPort))
    .sort((a, b) => a - b);
}

describe('host port range', function () {
  this.timeout(240_000);
  before(requireEtcd);

  it('publishes from the range, FIFO over 6 create/destroy cycles on 12 ports, and leaks none', async () => {
    const range = testRange();
    const { client, agent } = await startAgent({}, async (ns) => {
      await ns.put('config/agent/container_port_range').value(range.text);
      await ns.put('config/agent/port_reuse_cooldown').value('0');
    });
    const seen: number[][] = [];
    for (let i = 0; i < 6; i++) {
      const id = uniqueName('k');
      const info = await client.call(methods.create_kernel, id, config);
      const ports = portsOf(info);
      expect(await publishedOf(info.container_id)).to.deep.equal([...ports].sort((a, b) => a - b));
      for (const p of ports) expect(p).to.be.within(range.lo, range.hi);
      // First in first out: a released port waits behind the other 8 before it comes back.
      if (i >= 1)
        expect(
          ports.filter((p) => seen[i - 1]!.includes(p)),
          `cycle ${i}`,
        ).to.deep.equal([]);
      if (i >= 2)
        expect(
          ports.filter((p) => seen[i - 2]!.includes(p)),
          `cycle ${i}`,
        ).to.deep.equal([]);
      seen.push(ports);
      await client.call(methods.destroy_kernel, id);
    }
    expect(new Set(seen.flat()).size).to.equal(12);
    expect(agent.portStats()).to.include({ size: 12, held: 0, ready: 12, cooling: 0 });
  });

  it('does not give a port out again within the cool-down, and a create with too few free ports takes nothing', async () => {
    const range = testRange();
    const { client, agent, agentId } = await startAgent({}, async (ns) => {
      await ns.put('config/agent/container_port_range').value(range.text);
      await ns.put('config/agent/port_reuse_cooldown').value('3600');
    });
    const used = new Set<number>();
    for (let i = 0; i < 3; i++) {
      const id = uniqueName('k');
      const info = await client.call(methods.create_kernel, id, config);
      for (const p of portsOf(info)) {
        expect(used.has(p), `port ${p} given out again within the cool-down`).to.equal(false);
        used.add(p);
      }
      await client.call(methods.destroy_kernel, id);
    }
    const err = await remoteError(client.call(methods.create_kernel, uniqueName('k'), config));
    expect(err.remoteType).to.equal('agent.InsufficientResources');
    expect(err.message).to.match(new RegExp(`needs 4, the range ${range.text} has 0 free \\(12 cooling down.*container_port_range`));
    expect(agent.portStats()).to.include({ held: 0, cooling: 12 });
    expect(await containersOf(agentId)).to.have.length(0);
    expect(homesIn(agent.options.scratchRoot)).to.deep.equal([]);
    const [summary] = await Promise.all([client.call(methods.list_kernels)]);
    expect(summary).to.deep.equal([]);
  });

  it('skips a port that a listener of the test holds', async () => {
    const range = testRange();
    const listener = net.createServer();
    await new Promise<void>((res, rej) => listener.once('error', rej).listen(range.lo, '127.0.0.1', () => res()));
    onCleanup(() => new Promise<void>((res) => listener.close(() => res())));
    const { client, agent } = await startAgent({}, async (ns) => {
      await ns.put('config/agent/container_port_range').value(range.text);
      await ns.put('config/agent/port_reuse_cooldown').value('0');
    });
    const info = await client.call(methods.create_kernel, uniqueName('k'), config);
    expect(portsOf(info)).to.deep.equal([range.lo + 1, range.lo + 2, range.lo + 3, range.lo + 4]);
    expect(agent.portStats()).to.include({ held: 4 });
  });

  it('keeps the ports of kernels across an agent SIGKILL and re-adoption', async () => {
    const range = testRange();
    const raw = await agentOptions();
    const { ns } = testEtcd(raw.namespace);
    await ns.put('config/agent/container_port_range').value(range.text);
    await ns.put('config/agent/port_reuse_cooldown').value('3600');
    await ns.put('config/agent/cpu_overcommit').value('2');
    removeContainersOf(raw.agentId!);
    const args = await loopbackAgentFlags({
      namespace: raw.namespace,
      agentId: raw.agentId!,
      port: raw.agentPort,
      scratchRoot: raw.scratchRoot!,
    });
    const first = spawnAgent(args);
    await first.waitFor(/"message":"agent running"/);
    const c1 = new AgentClient(`tcp://127.0.0.1:${raw.agentPort}`, { timeoutMs: 30_000 });
    const kept = [
      await c1.call(methods.create_kernel, uniqueName('k'), config),
      await c1.call(methods.create_kernel, uniqueName('k'), config),
    ];
    c1.close();
    first.child.kill('SIGKILL');
    await first.exited;

    const agent = new Agent(await validateOptions(raw), testLogger());
    onCleanup(() => agent.stop());
    await agent.start();
    const client = new AgentClient(`tcp://127.0.0.1:${raw.agentPort}`, { timeoutMs: 30_000 });
    onCleanup(() => client.close());
    expect(agent.portStats()).to.include({ held: 8, ready: 4 });
    const third = await client.call(methods.create_kernel, uniqueName('k'), config);
    const keptPorts = kept.flatMap(portsOf);
    expect(portsOf(third).filter((p) => keptPorts.includes(p))).to.deep.equal([]);
    expect((await remoteError(client.call(methods.create_kernel, uniqueName('k'), config))).remoteType).to.equal(
      'agent.InsufficientResources',
    );
    for (const k of [...kept, third]) await client.call(methods.destroy_kernel, k.id);
    expect(agent.portStats()).to.include({ held: 0, cooling: 12 });
  });
});
