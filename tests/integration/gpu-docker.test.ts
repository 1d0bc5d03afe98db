/**
 * GPU kernels with a GPU this machine does not have: the agent detects the
 * `dgx8` fixture (eight GPUs on two NUMA nodes, through a stand-in
 * nvidia-smi) and creates its containers for real with Docker on the
 * device-node path, the fixture's /dev nodes replaced by character devices
 * 1:3 because Docker needs real ones. Checked: the devices, libraries and
 * variables a container gets, NUMA-preferring allocation, refusals that take
 * nothing, restart with the same devices, re-adoption after an agent
 * restart, and a create that Docker refuses (the runtime path here) giving
 * its devices back.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs, readdirSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import { NvidiaCuda } from '../../src/accelerators/nvidia.js';
import { methods } from '../../src/rpc/methods.js';
import {
  containersOf,
  coresHeld,
  remoteError,
  requireEtcd,
  startAgent,
  tempScratch,
  TEST_IMAGE_LANG,
  TEST_IMAGE_PREFIX,
  uniqueName,
} from '../helpers/env.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { standInTree } from '../helpers/gpu-fixtures.js';
import { poolSettled, putPool } from '../helpers/pool.js';
import { agentctl } from '../helpers/ctl.js';

const docker = new Docker();
/** A kernel image of this test's own that opts in to CUDA (the shared one does not). */
const POOL_LANG = `python:cuda-${process.pid}`;
const IMAGE = `agent-gpu-test/kernel-${POOL_LANG}`;
const config = (gpu: number, lang = IMAGE) => ({ lang, limits: { cpu_slot: 1, mem_slot: 256, gpu_slot: gpu }, mounts: [], environ: {} });

describe('GPU kernels on the device-node path (fixture GPUs, real Docker)', function () {
  this.timeout(90_000);
  before(async () => {
    await requireEtcd();
    const dockerfile = `FROM ${TEST_IMAGE_PREFIX}${TEST_IMAGE_LANG}\nLABEL ai.backend.accelerators=cuda ai.backend.envs.gpucount=GPU_COUNT\n`;
    execFileSync('docker', ['build', '-q', '-t', IMAGE, '-'], { input: dockerfile, stdio: ['pipe', 'ignore', 'pipe'] });
  });
  after(async () => {
    await docker
      .getImage(IMAGE)
      .remove({ force: true })
      .catch(() => undefined);
  });

  const agentWith = async (
    tree: Awaited<ReturnType<typeof standInTree>>,
    overrides: { agentId?: string; scratchRoot?: string } = {},
    pool = false,
  ) =>
    startAgent(
      overrides,
      async (ns) => {
        await ns.put('config/agent/image_allow_list').value(IMAGE);
        await ns.put('config/agent/cpu_overcommit').value('4'); // several kernels on this 2-core machine
        if (pool) {
          // The pool names images by prefix: this namespace's prefix is the test image's.
          await ns.put('config/agent/image_prefix').value('agent-gpu-test/kernel-');
          await putPool(ns, { [POOL_LANG]: { g1: 1, small: 1 } }, {}, [
            { name: 'g1', cpu: 1, memory: 256, gpu: 1 },
            { name: 'small', cpu: 1, memory: 256 },
          ]);
        }
      },
      undefined,
      { accelerator: new NvidiaCuda(tree.options) },
    );

  it('gives a kernel its devices, control nodes, driver files and variables, near its NUMA node; refuses what does not fit, taking nothing', async () => {
    const tree = await standInTree('dgx8');
    const { client, agent, agentId, port } = await agentWith(tree);
    expect(agent.gpuService!.slots).to.equal(8);
    const k1 = uniqueName('k');
    const info = await client.call(methods.create_kernel, k1, config(2));
    expect(info.gpu_set).to.deep.equal([0, 1]);
    const c = await docker.getContainer(info.container_id).inspect();
    const devs = (c.HostConfig.Devices ?? []).map(
      (d: Docker.DeviceMapping) => `${d.PathOnHost}>${d.PathInContainer}:${d.CgroupPermissions}`,
    );
    expect(devs).to.deep.equal(
      ['nvidia0', 'nvidia1', 'nvidiactl', 'nvidia-uvm', 'nvidia-uvm-tools', 'nvidia-modeset'].map(
        (n) => `${tree.root}/dev/${n}>/dev/${n}:mrw`,
      ),
    );
    expect(c.HostConfig.Binds).to.include(`${tree.root}/lib/libcuda.so.1:/usr/local/nvidia/lib64/libcuda.so.1:ro`);
    expect(c.HostConfig.Binds).to.include(`${tree.root}/bin/nvidia-smi:/usr/local/nvidia/bin/nvidia-smi:ro`);
    expect(c.Config.Env).to.include.members(['CUDA_VISIBLE_DEVICES=0,1', 'GPU_COUNT=2', 'LD_LIBRARY_PATH=/usr/local/nvidia/lib64']);
    expect(c.Config.Labels['io.compute-agent.gpu-set']).to.equal('0,1');
    // The fixture's node 0 GPUs: this machine's node 0 has every core, so the memory node is pinned too.
    const nodes = readdirSync('/sys/devices/system/node').filter((n) => /^node\d+$/.test(n));
    if (nodes.length === 1) expect(c.HostConfig.CpusetMems).to.equal('0');

    const out = consoleText(
      await runToEnd(
        client,
        k1,
        "import os, subprocess\nprint(sorted(n for n in os.listdir('/dev') if n.startswith('nvidia')))\nprint(subprocess.run(['/usr/local/nvidia/bin/nvidia-smi'], capture_output=True, text=True).stdout.splitlines()[1])\nprint(open('/usr/local/nvidia/lib64/libcuda.so.1').read().strip())",
      ),
      'stdout',
    );
    expect(out.split('\n')).to.deep.equal([
      "['nvidia-modeset', 'nvidia-uvm', 'nvidia-uvm-tools', 'nvidia0', 'nvidia1', 'nvidiactl']",
      '1, GPU-5e1c0a01-1c2d-4e5f-8a9b-c0ffee000001, 00000000:0F:00.0, NVIDIA A100-SXM4-40GB, 40960, 3, 0',
      'stand-in libcuda.so.1',
      '',
    ]);

    const k2 = uniqueName('k');
    expect((await client.call(methods.create_kernel, k2, config(4))).gpu_set).to.deep.equal([4, 5, 6, 7]); // node 0 has only 2 left
    const before = { containers: (await containersOf(agentId)).length, cores: await coresHeld(client) };
    const tooMany = await remoteError(client.call(methods.create_kernel, uniqueName('k'), config(3)));
    expect(tooMany.remoteType).to.equal('agent.InsufficientResources');
    expect(String(tooMany.remoteArgs[0])).to.match(/not enough GPUs for this kernel: 3 GPU\(s\) requested, 2 of 8 free/);
    const plainImage = await remoteError(client.call(methods.create_kernel, uniqueName('k'), config(1, TEST_IMAGE_LANG)));
    expect(plainImage.remoteType).to.equal('aiozmq.rpc.base.ParametersError');
    expect(String(plainImage.remoteArgs[0])).to.match(
      /image lablup\/kernel-python:3-debian does not opt in to GPUs: it needs the label io\.sorna\.nvidia\.enabled=yes or ai\.backend\.accelerators=cuda/,
    );
    const held = await remoteError(client.call(methods.create_kernel, uniqueName('k'), { ...config(1), gpu_set: [1] }));
    expect(String(held.remoteArgs[0])).to.match(/GPU 1 is held by k-/);
    expect((await containersOf(agentId)).length).to.equal(before.containers);
    expect(await coresHeld(client)).to.equal(before.cores);
    expect(agent.gpuService!.books.free).to.equal(2);

    const stats = await client.call(methods.get_node_stats);
    expect(stats.gpu_path).to.equal('device-nodes');
    expect(stats.gpus.map((g) => g.kernel_id)).to.deep.equal([k1, k1, null, null, k2, k2, k2, k2]);
    expect(stats.gpus[5]).to.deep.include({ mem_used_bytes: 20120 * 1024 * 1024, util_pct: 87, numa_node: 1 });
    const nodeText = (await agentctl(['--agent', `tcp://127.0.0.1:${port}`, 'node'])).stdout;
    expect(nodeText).to.match(/^gpus: device-nodes, 8 usable\nGPU +NAME +NUMA +MEM USED +MEM +UTIL +KERNEL\n/m);
    expect(nodeText).to.match(new RegExp(`^0 +NVIDIA A100-SXM4-40GB +0 +.+ +${k1}$`, 'm'));
    expect(nodeText).to.match(/^5 +NVIDIA A100-SXM4-40GB +1 +.+ 87% +k-/m);
    expect(nodeText).to.match(/^2 +NVIDIA A100-SXM4-40GB +0 +.+ +0% +-$/m);

    // GPU memory per kernel: the driver's per-process figures (here the stand-in's), matched to the kernel by its runner's cgroup.
    await fs.writeFile(path.join(tree.root, 'compute-apps.csv'), `${c.State.Pid}, 1500\n999999999, 7\n`);
    await agent.gpuService!.sampleMemory();
    await fs.writeFile(path.join(tree.root, 'compute-apps.csv'), `${c.State.Pid}, 900\n`);
    await agent.gpuService!.sampleMemory();
    expect((await client.call(methods.destroy_kernel, k2))!.gpu_mem_max_bytes).to.equal(0);
    expect(agent.gpuService!.books.free).to.equal(6);
    expect((await client.call(methods.destroy_kernel, k1))!.gpu_mem_max_bytes).to.equal(1500 * 1024 * 1024);
    expect(agent.gpuService!.books.free).to.equal(8);
    expect(await containersOf(agentId)).to.have.length(0);
  });

  it('restarts a GPU kernel on the same devices, and an agent restart re-adopts what each kernel holds', async () => {
    const tree = await standInTree('dgx8');
    const scratchRoot = await tempScratch();
    const agentId = uniqueName('i-test');
    const first = await agentWith(tree, { agentId, scratchRoot });
    const k1 = uniqueName('k');
    const k2 = uniqueName('k');
    await first.client.call(methods.create_kernel, k1, config(2));
    await first.client.call(methods.create_kernel, k2, config(1));
    const restarted = await first.client.call(methods.restart_kernel, k1, { ...config(2), gpu_set: [0, 1] });
    expect(restarted.gpu_set).to.deep.equal([0, 1]);
    const c = await docker.getContainer(restarted.container_id).inspect();
    expect((c.HostConfig.Devices ?? []).slice(0, 2).map((d: Docker.DeviceMapping) => d.PathInContainer)).to.deep.equal([
      '/dev/nvidia0',
      '/dev/nvidia1',
    ]);
    expect(first.agent.gpuService!.books.free).to.equal(5);
    await first.agent.stop(); // the kernels keep running

    const second = await agentWith(tree, { agentId, scratchRoot });
    expect([...second.agent.gpuService!.books.holders()].sort()).to.deep.equal([
      [0, k1],
      [1, k1],
      [2, k2],
    ]);
    const again = await second.client.call(methods.create_kernel, k1, config(2));
    expect(again.gpu_set).to.deep.equal([0, 1]);
    expect((await second.client.call(methods.create_kernel, uniqueName('k'), config(1))).gpu_set).to.deep.equal([3]);
    await second.client.call(methods.reset);
    expect(second.agent.gpuService!.books.free).to.equal(8);
  });

  it('gives the devices back when Docker refuses the container (the runtime path without the runtime)', async () => {
    const tree = await standInTree('dgx8', { docker: async () => ({ runtimes: ['nvidia', 'runc'], apiVersion: '1.41' }) });
    const { client, agent, agentId } = await agentWith(tree);
    expect(agent.gpuService!.state.path).to.equal('runtime');
    const err = await remoteError(client.call(methods.create_kernel, uniqueName('k'), config(1)));
    expect(err.remoteType).to.equal('agent.KernelCreationFailed');
    expect(String(err.remoteArgs[0])).to.match(
      /while starting the container: .*could not select device driver "nvidia".*; everything it took was released$/,
    );
    expect(agent.gpuService!.books.free).to.equal(8);
    expect(await coresHeld(client)).to.equal(0);
    expect(await containersOf(agentId)).to.have.length(0);
  });

  it('keeps a pooled GPU container holding its device while idle, hands it to a GPU kernel of that count, and re-adopts it', async () => {
    const tree = await standInTree('dgx8');
    const scratchRoot = await tempScratch();
    const agentId = uniqueName('i-test');
    const first = await agentWith(tree, { agentId, scratchRoot }, true);
    const [a, b] = await poolSettled(first.agent, 2);
    const gpuIdle = [...first.agent.warmPool!.idle.values()].find((c) => c.type === 'g1')!;
    expect(gpuIdle.gpuSet).to.have.length(1);
    expect([a, b]).to.include(gpuIdle.containerId);
    expect(first.agent.gpuService!.books.holders().get(gpuIdle.gpuSet[0]!)).to.equal(`pool:${gpuIdle.slot}`);
    const c = await docker.getContainer(gpuIdle.containerId).inspect();
    expect((c.HostConfig.Devices ?? []).map((d: Docker.DeviceMapping) => d.PathInContainer)).to.include(`/dev/nvidia${gpuIdle.gpuSet[0]}`);

    const cpuKernel = await first.client.call(methods.create_kernel, uniqueName('k'), config(0, POOL_LANG));
    expect(cpuKernel.gpu_set).to.deep.equal([]);
    expect(cpuKernel.container_id).not.to.equal(gpuIdle.containerId); // a GPU container never serves a kernel without GPUs
    const k = uniqueName('k');
    const info = await first.client.call(methods.create_kernel, k, config(1, POOL_LANG));
    expect(info.container_id).to.equal(gpuIdle.containerId); // claimed: no device change
    expect(info.gpu_set).to.deep.equal(gpuIdle.gpuSet);
    expect(first.agent.gpuService!.books.holders().get(gpuIdle.gpuSet[0]!)).to.equal(k);
    const out = consoleText(
      await runToEnd(first.client, k, "import os\nprint(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['GPU_COUNT'])"),
      'stdout',
    );
    expect(out).to.equal('0 1\n');
    // The pool refills with another device; after an agent restart the kernel and the idle container hold theirs again.
    await poolSettled(first.agent, 2);
    const refill = [...first.agent.warmPool!.idle.values()].find((x) => x.type === 'g1')!;
    expect(refill.gpuSet).to.have.length(1).and.not.to.deep.equal(gpuIdle.gpuSet);
    await first.agent.stop();
    const second = await agentWith(tree, { agentId, scratchRoot }, true);
    const holders = second.agent.gpuService!.books.holders();
    expect(holders.get(gpuIdle.gpuSet[0]!)).to.equal(k);
    expect(holders.get(refill.gpuSet[0]!)).to.equal(`pool:${refill.slot}`);
    expect(holders.size).to.equal(2);
    await second.client.call(methods.destroy_kernel, k);
    expect(second.agent.gpuService!.books.holders().has(gpuIdle.gpuSet[0]!)).to.equal(false);
  });
});
