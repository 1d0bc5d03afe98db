/**
 * Node and kernel figures of the real agent: `get_node_stats`, the extra
 * keys of the heartbeat's agent_info, and `nodes/agents/<id>/heartbeat` in
 * etcd, checked against /proc, statfs and a running kernel; and heartbeats
 * that go on, logging once, while etcd is down (an etcd of the test's own).
 */
import { promises as fs } from 'node:fs';
import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { Etcd3 } from 'etcd3';
import { Agent } from '../../src/agent.js';
import { validateOptions } from '../../src/config/options.js';
import { createLogger } from '../../src/log.js';
import { methods } from '../../src/rpc/methods.js';
import { type NodeStatsResult } from '../../src/rpc/results.js';
import { agentOptions, eventually, onCleanup, requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { sink } from '../helpers/sink.js';
import { ownEtcd } from '../helpers/own-etcd.js';

const NODE_KEYS = ['cpu_pct', 'mem_total_bytes', 'mem_available_bytes', 'disk_total_bytes', 'disk_free_bytes'];

async function memTotalBytes(): Promise<number> {
  return Number(/^MemTotal:\s+(\d+) kB$/m.exec(await fs.readFile('/proc/meminfo', 'utf8'))![1]) * 1024;
}

describe('node stats of the real agent', function () {
  this.timeout(90_000);
  before(requireEtcd);

  it("answers get_node_stats with the node figures and each kernel's cgroup figures", async () => {
    const { client, agent } = await startAgent(); // it removes the agent's containers after the test
    const kernelId = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, kernelId, {
      lang: TEST_IMAGE_LANG,
      limits: { cpu_slot: 1, mem_slot: 256, gpu_slot: 0 },
      mounts: [],
      environ: {},
    });
    const stats: NodeStatsResult = await client.call(methods.get_node_stats);

    expect(stats.node).to.have.keys(NODE_KEYS);
    expect(stats.node.mem_total_bytes).to.equal(await memTotalBytes());
    expect(stats.node.mem_available_bytes).to.be.above(0).and.at.most(stats.node.mem_total_bytes);
    expect(stats.node.cpu_pct).to.be.within(0, 100);
    const fsStat = await fs.statfs(agent.options.scratchRoot);
    expect(stats.node.disk_total_bytes).to.equal(fsStat.blocks * fsStat.bsize);
    expect(stats.node.disk_free_bytes).to.be.above(0).and.at.most(stats.node.disk_total_bytes);
    expect(stats.time).to.be.closeTo(Date.now() / 1000, 60);

    expect(Object.keys(stats.kernels)).to.deep.equal([kernelId]);
    const k = stats.kernels[kernelId]!;
    expect(k.mem_cur_bytes, 'mem_cur_bytes')
      .to.be.above(0)
      .and.at.most(256 * 1024 * 1024);
    expect(k.mem_max_bytes).to.be.at.least(k.mem_cur_bytes);
    expect(k.cpu_used, 'cpu_used (ms)').to.be.above(0); // the runner started: python used some CPU
    expect(k.io_cur_scratch_size).to.be.above(0); // .config/environ.txt

    await client.call(methods.destroy_kernel, kernelId);
    expect((await client.call(methods.get_node_stats)).kernels).to.deep.equal({});
  });

  it('puts the figures in the heartbeat and in nodes/agents/<id>/heartbeat, and removes that key on stop', async () => {
    const s = await sink();
    const { client, agent, agentId, etcd } = await startAgent({}, async (ns, raw) => {
      await ns.put(`nodes/agents/${raw.agentId}/config/heartbeat_interval`).value('0.3');
      await ns.put('nodes/manager/event_addr').value(s.addr);
    });
    const kernelId = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, kernelId, {
      lang: TEST_IMAGE_LANG,
      limits: { cpu_slot: 1, mem_slot: 256, gpu_slot: 0 },
      mounts: [],
      environ: {},
    });

    // The first heartbeat after the create may have been sampled before the kernel was registered: take one that has it.
    const info = (await eventually("a heartbeat with the kernel's figures", () => {
      const beats = s.events.filter((e) => e.name === 'instance_heartbeat').map((e) => e.args[0] as Record<string, any>);
      return beats.find((b) => b.kernel_stats?.[kernelId]) ?? null;
    })) as Record<string, any>;
    // The 2018 keys are unchanged; node and kernel_stats are extra.
    expect(info).to.include.keys('ip', 'region', 'addr', 'mem_slots', 'cpu_slots', 'gpu_slots', 'images', 'node', 'kernel_stats');
    expect(info.node).to.have.keys(NODE_KEYS);
    expect(info.node.mem_total_bytes).to.equal(await memTotalBytes());
    expect(info.kernel_stats[kernelId].mem_cur_bytes).to.be.above(0);

    const beat = (await eventually('a heartbeat in etcd that counts the kernel', async () => {
      const v = JSON.parse((await etcd.get(`nodes/agents/${agentId}/heartbeat`).string()) ?? 'null') as Record<string, any> | null;
      return v?.kernels === 1 ? v : null;
    })) as Record<string, any>;
    expect(beat).to.have.keys('time', 'addr', 'cpu_slots', 'mem_slots', 'node', 'kernels', 'kernel_isolation');
    expect(beat).to.include({ addr: agent.address, cpu_slots: info.cpu_slots, mem_slots: info.mem_slots });
    expect(beat.time)
      .to.be.a('number')
      .and.closeTo(Date.now() / 1000, 60);
    expect(Number.isInteger(beat.time)).to.equal(true);
    expect(beat.node).to.have.keys(NODE_KEYS);

    await agent.stop();
    expect(await etcd.get(`nodes/agents/${agentId}/heartbeat`).string()).to.equal(null);
  });

  it('keeps beating while etcd is down, logging the failed write once, and writes again when etcd is back', async () => {
    const own = await ownEtcd();
    const lines: string[] = [];
    const stream = new PassThrough();
    stream.on('data', (d: Buffer) => lines.push(...d.toString().trim().split('\n')));
    const raw = await agentOptions({ etcdAddr: own.addr });
    const s = await sink();
    const setup = new Etcd3({ hosts: `http://${own.addr}` });
    const ns = setup.namespace(`/sorna/${raw.namespace}/`);
    onCleanup(() => setup.close());
    await ns.put(`nodes/agents/${raw.agentId}/config/heartbeat_interval`).value('0.2');
    await ns.put('nodes/manager/event_addr').value(s.addr);
    const agent = new Agent(await validateOptions(raw), createLogger({ level: 'info', format: 'json', stream }));
    onCleanup(() => agent.stop());
    await agent.start();
    const key = `nodes/agents/${raw.agentId}/heartbeat`;
    await eventually('a heartbeat in our etcd', async () => (await ns.get(key).string()) !== null);

    await own.kill();
    const down = Date.now();
    await eventually(
      '10 heartbeats while etcd is down',
      () => s.events.filter((e) => e.name === 'instance_heartbeat' && e.at > down).length >= 10,
      30_000,
    );
    const failures = () => lines.filter((l) => l.includes('cannot write the heartbeat to etcd'));
    expect(failures(), lines.join('\n')).to.have.length(1);

    await own.start();
    const up = Date.now() / 1000;
    await eventually(
      'a fresh heartbeat in etcd',
      async () => (JSON.parse((await ns.get(key).string()) ?? '{}') as { time?: number }).time! >= Math.floor(up),
      60_000,
      200,
    );
    await eventually('the recovery to be logged', () => lines.some((l) => l.includes('etcd takes heartbeats again')));
    expect(failures()).to.have.length(1);
    await agent.stop();
  });
});
