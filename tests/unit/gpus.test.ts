/**
 * GPUs without a GPU: detection from captured-format nvidia-smi output and a
 * fake /proc+/sys+/dev tree (an 8-GPU two-NUMA-node machine, and one GPU
 * whose numa_node is -1), the choice of path, the Docker arguments of each
 * path, NUMA-preferring allocation and the cores that match, and the refusals
 * that take nothing.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { allowed, apiAtLeast, driverLibraries, parseComputeApps, parseSmiCsv, sysfsBusId } from '../../src/accelerators/nvidia.js';
import { commonNode, cpusetMems, DeviceAllocator, DevicesExhausted, numaPlacement, pickDevices } from '../../src/accelerators/allocator.js';
import { containerOfCgroup, GpuService, parseCpuList, readNodeCpus } from '../../src/accelerators/gpus.js';
import { gpuCheck } from '../../src/accelerators/check.js';
import { formatProbe, probeGpus } from '../../src/accelerators/report.js';
import { CpuAllocator } from '../../src/kernels/allocator.js';
import { containerRequest } from '../../src/containers/launch.js';
import { imageTraits } from '../../src/containers/image-traits.js';
import { parseKernelConfig } from '../../src/containers/spec.js';
import { NoResourcesError, ParametersError } from '../../src/errors.js';
import { silentLogger, type Logger } from '../../src/log.js';
import { fixtureCuda, fixtureRoot } from '../helpers/gpu-fixtures.js';
import { onCleanup } from '../helpers/env.js';

async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gpu-unit-'));
  onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A script standing in for nvidia-smi. */
async function fakeSmi(body: string): Promise<string> {
  const file = path.join(await tempDir(), 'nvidia-smi');
  await fs.writeFile(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

/** A logger that keeps its lines. */
function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const log: Logger & { lines: string[] } = {
    lines,
    error: (m) => lines.push(`error ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    info: (m) => lines.push(`info ${m}`),
    debug: () => undefined,
    child: () => log,
  };
  return log;
}

describe('GPU detection (nvidia-smi and a fake /proc, /sys, /dev)', () => {
  it('parses nvidia-smi CSV, bus ids in sysfs spelling and "[N/A]" figures', () => {
    const rows = parseSmiCsv(
      '0, GPU-0b4f6d2e-7a1c, 00000000:00:1E.0, Tesla T4, 15360, 12, [N/A]\n1, GPU-aa, 0000:3B:00.0, NVIDIA A100, 80 GB, 40960, 5, 33\n',
    );
    expect(rows[0]).to.deep.equal({
      index: 0,
      uuid: 'GPU-0b4f6d2e-7a1c',
      busId: '0000:00:1e.0',
      name: 'Tesla T4',
      memoryTotalMiB: 15360,
      memoryUsedMiB: 12,
      utilizationPct: null,
    });
    expect(rows[1]).to.include({ name: 'NVIDIA A100, 80 GB', busId: '0000:3b:00.0', utilizationPct: 33 });
    expect(sysfsBusId('00000000:BD:00.0')).to.equal('0000:bd:00.0');
    expect(() => parseSmiCsv('NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.')).to.throw(/cannot read/);
    expect(apiAtLeast('1.41', 1, 40)).to.equal(true);
    expect(apiAtLeast('1.39', 1, 40)).to.equal(false);
    expect(allowed({ index: 3, uuid: 'GPU-ab' }, ['3'])).to.equal(true);
    expect(allowed({ index: 3, uuid: 'GPU-ab' }, ['gpu-AB'])).to.equal(true);
    expect(allowed({ index: 3, uuid: 'GPU-ab' }, ['1'])).to.equal(false);
  });

  it('finds the eight GPUs of a two-node machine with their NUMA nodes and minors, and takes the device-node path without a runtime', async () => {
    const s = await fixtureCuda('dgx8').detect();
    expect(s.path).to.equal('device-nodes');
    expect(s.devices).to.have.length(8);
    expect(s.devices.map((d) => d.numaNode)).to.deep.equal([0, 0, 0, 0, 1, 1, 1, 1]);
    expect(s.devices[7]).to.include({ index: 7, busId: '0000:bd:00.0', minor: 7, name: 'NVIDIA A100-SXM4-40GB', memoryTotalMiB: 40960 });
    expect(s.figures[5]).to.deep.equal({ index: 5, memoryUsedMiB: 20120, memoryTotalMiB: 40960, utilizationPct: 87 });
    expect(s.reason).to.match(/no NVIDIA container runtime; device nodes under .*dgx8\/dev and 6 driver libraries/);
    expect(s.fix).to.match(/nvidia-container-toolkit/);
  });

  it('reads numa_node -1 as "any node"', async () => {
    const s = await fixtureCuda('any1').detect();
    expect(s.devices).to.have.length(1);
    expect(s.devices[0]).to.include({ numaNode: null, name: 'Tesla T4', uuid: 'GPU-0b4f6d2e-7a1c-4b9e-9d3f-2a6c8e1f4b70' });
    expect(s.figures[0]!.utilizationPct).to.equal(null);
  });

  it('takes the runtime path when Docker has the nvidia runtime, or the toolkit and DeviceRequests', async () => {
    const registered = await fixtureCuda('dgx8', { docker: async () => ({ runtimes: ['nvidia', 'runc'], apiVersion: '1.43' }) }).detect();
    expect(registered.path).to.equal('runtime');
    expect(registered.reason).to.match(/nvidia runtime registered/);
    const dir = await tempDir();
    await fs.writeFile(path.join(dir, 'nvidia-container-cli'), '#!/bin/sh\n', { mode: 0o755 });
    const toolkit = await fixtureCuda('dgx8', { binDirs: [dir] }).detect();
    expect(toolkit.path).to.equal('runtime');
    expect(toolkit.reason).to.match(/DeviceRequests/);
    const oldDocker = await fixtureCuda('dgx8', {
      binDirs: [dir],
      docker: async () => ({ runtimes: ['runc'], apiVersion: '1.39' }),
    }).detect();
    expect(oldDocker.path).to.equal('device-nodes');
  });

  it('falls back to none, saying why, without a driver, with a failing or hung nvidia-smi, without device nodes, and when gpu_allow excludes all', async () => {
    const empty = await tempDir();
    const noDriver = await fixtureCuda('dgx8', { smi: path.join(empty, 'nvidia-smi'), procRoot: empty }).detect();
    expect(noDriver).to.include({ path: 'none', driverFound: false });
    expect(noDriver.reason).to.match(/^no NVIDIA driver \(.*driver\/nvidia is missing; .*nvidia-smi not found\)$/);
    expect(noDriver.devices).to.deep.equal([]);

    const failing = await fixtureCuda('dgx8', {
      smi: await fakeSmi('echo "Failed to initialize NVML: Driver/library version mismatch" >&2; exit 18'),
    }).detect();
    expect(failing).to.include({ path: 'none', driverFound: true });
    expect(failing.reason).to.match(/exited with code 18: Failed to initialize NVML: Driver\/library version mismatch/);

    const hung = await fixtureCuda('dgx8', { smi: await fakeSmi('sleep 600'), timeoutMs: 200 }).detect();
    expect(hung.path).to.equal('none');
    expect(hung.reason).to.match(/did not answer within 0.2 s and was killed/);

    const noNodes = await fixtureCuda('dgx8', { devRoot: empty }).detect();
    expect(noNodes.path).to.equal('none');
    expect(noNodes.reason).to.match(/no NVIDIA container runtime, and .*nvidiactl, .*nvidia0, .* missing/);

    const noLibs = await fixtureCuda('dgx8', { ldconfig: async () => '' }).detect();
    expect(noLibs.reason).to.match(/no libcuda\.so/);

    const excluded = await fixtureCuda('dgx8', { allow: () => ['9'] }).detect();
    expect(excluded).to.include({ path: 'none', excluded: 8 });
    expect(excluded.reason).to.match(/gpu_allow \(9\) excludes all 8/);

    const some = await fixtureCuda('dgx8', { allow: () => ['1', 'GPU-5e1c0a06-1c2d-4e5f-8a9b-c0ffee000006'] }).detect();
    expect(some.devices.map((d) => d.index)).to.deep.equal([1, 6]);
    expect(some.excluded).to.equal(6);
  });

  it('builds the Docker arguments of the runtime path: DeviceRequests with the UUIDs and the NVIDIA variables', async () => {
    const cuda = fixtureCuda('dgx8', { docker: async () => ({ runtimes: ['nvidia'], apiVersion: '1.43' }) });
    const s = await cuda.detect();
    const cfg = cuda.hostConfig([s.devices[4]!, s.devices[6]!], 'runtime');
    const uuids = ['GPU-5e1c0a04-1c2d-4e5f-8a9b-c0ffee000004', 'GPU-5e1c0a06-1c2d-4e5f-8a9b-c0ffee000006'];
    expect(cfg.deviceRequests).to.deep.equal([{ Driver: 'nvidia', DeviceIDs: uuids, Capabilities: [['gpu']] }]);
    expect(cfg.env).to.deep.equal([
      'CUDA_VISIBLE_DEVICES=0,1',
      `NVIDIA_VISIBLE_DEVICES=${uuids.join(',')}`,
      'NVIDIA_DRIVER_CAPABILITIES=compute,utility',
    ]);
    expect(cfg.devices).to.deep.equal([]);
    expect(cfg.binds).to.deep.equal([]);
    expect(cfg.runtime).to.equal(null);
    // A Docker older than DeviceRequests with the nvidia runtime: the container runs with the runtime instead.
    const legacy = fixtureCuda('dgx8', { docker: async () => ({ runtimes: ['nvidia'], apiVersion: '1.39' }) });
    expect((await legacy.detect()).path).to.equal('runtime');
    const old = legacy.hostConfig([s.devices[4]!], 'runtime');
    expect(old).to.deep.include({ runtime: 'nvidia', deviceRequests: [] });
    expect(old.env).to.include('NVIDIA_VISIBLE_DEVICES=GPU-5e1c0a04-1c2d-4e5f-8a9b-c0ffee000004');
  });

  it('builds the Docker arguments of the device-node path: its /dev/nvidiaN, the control nodes, the 64-bit driver libraries read-only', async () => {
    const cuda = fixtureCuda('dgx8');
    const s = await cuda.detect();
    const cfg = cuda.hostConfig([s.devices[2]!, s.devices[3]!], 'device-nodes');
    const dev = path.join(fixtureRoot('dgx8'), 'dev');
    expect(cfg.devices).to.deep.equal(
      ['nvidia2', 'nvidia3', 'nvidiactl', 'nvidia-uvm', 'nvidia-uvm-tools', 'nvidia-modeset'].map((n) => ({
        PathOnHost: `${dev}/${n}`,
        PathInContainer: `/dev/${n}`,
        CgroupPermissions: 'mrw',
      })),
    );
    expect(cfg.binds).to.include('/usr/lib/x86_64-linux-gnu/libcuda.so.1:/usr/local/nvidia/lib64/libcuda.so.1:ro');
    expect(cfg.binds).to.include(`${fixtureRoot('dgx8')}/bin/nvidia-smi:/usr/local/nvidia/bin/nvidia-smi:ro`);
    expect(cfg.binds.join(' ')).not.to.match(/i386|libm\.so|libc\.so/);
    expect(cfg.env).to.deep.equal(['CUDA_VISIBLE_DEVICES=0,1', 'LD_LIBRARY_PATH=/usr/local/nvidia/lib64']);
    expect(cfg.deviceRequests).to.deep.equal([]);
    expect(cuda.hostConfig([s.devices[0]!], 'none')).to.deep.equal({ env: [], binds: [], devices: [], deviceRequests: [], runtime: null });
    expect(
      driverLibraries('\tlibnvidia-ml.so.1 (libc6,x86-64) => /x/libnvidia-ml.so.1\n\tlibnvidia-ml.so.1 (libc6) => /y/libnvidia-ml.so.1\n'),
    ).to.deep.equal(['/x/libnvidia-ml.so.1']);
  });
});

describe('GPU allocation and NUMA placement', () => {
  const dgx = [0, 0, 0, 0, 1, 1, 1, 1].map((numaNode, index) => ({ index, numaNode }));
  const dgxCpus = new Map([
    [0, [0, 1, 2, 3, 4, 5, 6, 7]],
    [1, [8, 9, 10, 11, 12, 13, 14, 15]],
  ]);

  it('picks whole devices on one NUMA node, the tightest node that fits first, else the lowest indexes', () => {
    const books = new DeviceAllocator(dgx);
    expect(books.allocate(2, 'k1')).to.deep.equal([0, 1]);
    expect(books.allocate(4, 'k2')).to.deep.equal([4, 5, 6, 7]); // node 0 has only 2 left
    expect(books.allocate(1, 'k3')).to.deep.equal([2]);
    expect(() => books.allocate(2, 'k4')).to.throw(DevicesExhausted, /2 GPU\(s\) requested, 1 of 8 free/);
    expect(books.free).to.equal(1); // a refusal takes nothing
    books.release([4, 5, 6, 7]);
    expect(
      pickDevices(
        [
          { index: 3, numaNode: 0 },
          { index: 4, numaNode: 1 },
        ],
        2,
      ),
    ).to.deep.equal([3, 4]); // across nodes only when no node fits
    expect(pickDevices(dgx.slice(2), 2)).to.deep.equal([2, 3]); // node 0 has 2 free: tighter than node 1's 4
    expect(pickDevices(dgx, 1, 1)).to.deep.equal([4]); // a tie goes to the preferred node
    expect(pickDevices(dgx, 9)).to.equal(null);
    // A device of node "any" fits with either node, after the node's own.
    expect(
      pickDevices(
        [
          { index: 0, numaNode: null },
          { index: 1, numaNode: 1 },
          { index: 2, numaNode: 0 },
        ],
        2,
      ),
    ).to.deep.equal([0, 2]);
  });

  it('honours a gpu_set, refuses one held by another kernel or not usable, and adopts whatever a running kernel holds', () => {
    const books = new DeviceAllocator(dgx);
    books.claim([5, 6], 'k1');
    expect(() => books.claim([6], 'k2')).to.throw(DevicesExhausted, /GPU 6 is held by k1/);
    expect(() => books.claim([8], 'k2')).to.throw(DevicesExhausted, /GPU 8 is not usable/);
    books.claim([8, 6], 'k3', true);
    expect(books.holders().get(6)).to.equal('k3');
  });

  it('chooses the cores and memory node of the GPUs: pure functions', () => {
    expect(
      commonNode([
        { index: 0, numaNode: 1 },
        { index: 1, numaNode: null },
      ]),
    ).to.equal(1);
    expect(
      commonNode([
        { index: 0, numaNode: 0 },
        { index: 4, numaNode: 1 },
      ]),
    ).to.equal(null);
    expect(numaPlacement([dgx[5]!, dgx[6]!], dgxCpus)).to.deep.equal({ preferCores: [8, 9, 10, 11, 12, 13, 14, 15], node: 1 });
    expect(numaPlacement([dgx[0]!, dgx[7]!], dgxCpus)).to.deep.equal({ preferCores: null, node: null });
    expect(numaPlacement([{ index: 0, numaNode: null }], dgxCpus)).to.deep.equal({ preferCores: null, node: null });
    expect(cpusetMems(1, [8, 9], dgxCpus)).to.equal('1');
    expect(cpusetMems(1, [7, 8], dgxCpus)).to.equal(''); // a core off the node: all memory nodes
    expect(cpusetMems(null, [0], dgxCpus)).to.equal('');
    const cores = new CpuAllocator([...Array(16).keys()], 1);
    cores.allocate(3);
    expect(cores.allocate(2, [8, 9, 10, 11, 12, 13, 14, 15])).to.deep.equal([8, 9]);
    expect(cores.allocate(2, [0, 1, 2])).to.deep.equal([3, 4]); // preferred cores full: the least loaded others
    expect(parseCpuList('0-3,8,10-11\n')).to.deep.equal([0, 1, 2, 3, 8, 10, 11]);
  });

  it('reads the cores of each NUMA node from sysfs', async () => {
    expect(await readNodeCpus(path.join(fixtureRoot('dgx8'), 'sys'))).to.deep.equal(dgxCpus);
    expect(await readNodeCpus('/nonexistent')).to.deep.equal(new Map());
  });

  it('grants GPUs with matching cores, refuses on the CPU fallback or for an image that does not opt in, and takes nothing then', async () => {
    const gpus = new GpuService(fixtureCuda('dgx8'), silentLogger(), dgxCpus);
    await gpus.refresh();
    expect(gpus.slots).to.equal(8);
    const spec = { gpuCount: 2, gpuSet: null, image: 'lablup/kernel-cuda:11' };
    expect(() => gpus.take(spec, 'k0', { cuda: false })).to.throw(
      ParametersError,
      /does not opt in to GPUs: it needs the label io.sorna.nvidia.enabled=yes or ai.backend.accelerators=cuda/,
    );
    expect(gpus.books.free).to.equal(8);
    const grant = gpus.take({ ...spec, gpuCount: 4 }, 'k1', { cuda: true });
    expect(grant).to.deep.equal({ gpuSet: [0, 1, 2, 3], preferCores: [0, 1, 2, 3, 4, 5, 6, 7] });
    expect(gpus.take({ ...spec, gpuCount: 0 }, 'k2', { cuda: false })).to.equal(null);
    expect(() => gpus.take({ ...spec, gpuSet: [3] }, 'k2', { cuda: true })).to.throw(NoResourcesError, /GPU 3 is held by k1/);
    const cfg = gpus.hostConfig([4, 5], [8, 9]);
    expect(cfg.cpusetMems).to.equal('1');
    expect(cfg.devices.map((d) => d.PathInContainer).slice(0, 2)).to.deep.equal(['/dev/nvidia4', '/dev/nvidia5']);
    expect(gpus.report()[0]).to.deep.include({ index: 0, kernel_id: 'k1', numa_node: 0, mem_total_bytes: 40960 * 1024 * 1024 });

    const empty = await tempDir();
    const none = new GpuService(fixtureCuda('dgx8', { smi: path.join(empty, 'nvidia-smi'), procRoot: empty }), silentLogger());
    await none.refresh();
    expect(none.slots).to.equal(0);
    expect(() => none.take(spec, 'k1', { cuda: true })).to.throw(
      NoResourcesError,
      /^this node has no usable GPU \(no NVIDIA driver .*\); fix: install the NVIDIA driver/,
    );
    expect(none.books.holders().size).to.equal(0);
  });

  it('logs the path once, and again only when it changes', async () => {
    const log = recordingLogger();
    const failing = new GpuService(fixtureCuda('any1', { smi: await fakeSmi('exit 1') }), log);
    await failing.refresh();
    await failing.refresh();
    expect(log.lines).to.deep.equal(['warn no usable GPU: kernels asking for gpu_slot > 0 are refused, gpu_slots is 0']);
    const allow: string[] = [];
    const working = new GpuService(fixtureCuda('dgx8', { allow: () => allow }), log);
    await working.refresh();
    await working.refresh();
    expect(log.lines.slice(1)).to.deep.equal(['info GPUs detected']);
    allow.push('0');
    await working.refresh();
    expect(log.lines.slice(2)).to.deep.equal(['info GPUs detected']);
    expect(working.slots).to.equal(1);
  });
});

describe('GPU memory per kernel', () => {
  const cid = 'ab'.repeat(32);
  it('parses the per-process figures and finds the container of a process from its cgroup (v1 and v2)', () => {
    expect(parseComputeApps('4242, 1500\n4243, [N/A]\n')).to.deep.equal([{ pid: 4242, usedMiB: 1500 }]);
    expect(() => parseComputeApps('No running processes found')).to.throw(/cannot read/);
    expect(containerOfCgroup(`12:memory:/docker/${cid}\n11:cpuset:/docker/${cid}\n`)).to.equal(cid);
    expect(containerOfCgroup(`0::/system.slice/docker-${cid}.scope\n`)).to.equal(cid);
    expect(containerOfCgroup('0::/user.slice/session-3.scope\n')).to.equal(null);
  });

  it("keeps each container's maximum over the samples, summed over its processes, and says nothing of others", async () => {
    const proc = await tempDir();
    for (const [pid, text] of [
      ['11', `0::/system.slice/docker-${cid}.scope\n`],
      ['12', `0::/system.slice/docker-${cid}.scope\n`],
      ['13', '0::/init.scope\n'],
    ]) {
      await fs.mkdir(path.join(proc, pid!));
      await fs.writeFile(path.join(proc, pid!, 'cgroup'), text!);
    }
    let answer = '11, 100\n12, 50\n13, 4000\n14, 1\n';
    const cuda = fixtureCuda('any1');
    cuda.processMemory = async () => parseComputeApps(answer);
    const gpus = new GpuService(cuda, silentLogger());
    gpus.procRoot = proc;
    await gpus.refresh();
    await gpus.sampleMemory();
    answer = '11, 20\n';
    await gpus.sampleMemory();
    expect(gpus.takeMemoryMax(cid)).to.equal(150 * 1024 * 1024);
    expect(gpus.takeMemoryMax(cid)).to.equal(0); // forgotten once taken
    const log = recordingLogger();
    cuda.processMemory = async () => parseComputeApps('garbage');
    const failing = new GpuService(cuda, log);
    await failing.refresh();
    await failing.sampleMemory();
    await failing.sampleMemory();
    expect(log.lines.filter((l) => /memory/.test(l))).to.have.length(1);
  });

  it('reads the stand-in nvidia-smi of the fixture: no compute-apps file, no processes', async () => {
    expect(await fixtureCuda('dgx8').processMemory()).to.deep.equal([]);
  });
});

describe('GPU kernels: spec, image labels and container request', () => {
  it('rounds a fractional gpu_slot up to whole devices, and a gpu_set gives the count', () => {
    expect(parseKernelConfig({ lang: 'python:3', limits: { gpu_slot: 0.5 } }, 'p/', '/mnt').gpuCount).to.equal(1);
    expect(parseKernelConfig({ lang: 'python:3', limits: { gpu_slot: 1.5 } }, 'p/', '/mnt').gpuCount).to.equal(2);
    expect(parseKernelConfig({ lang: 'python:3', limits: { gpu_slot: 0 } }, 'p/', '/mnt').gpuCount).to.equal(0);
    expect(parseKernelConfig({ lang: 'python:3', limits: { gpu_slot: 1 }, gpu_set: [5, 4] }, 'p/', '/mnt')).to.include({ gpuCount: 2 });
  });

  it('reads the opt-in labels and the GPU-count variables of an image', () => {
    expect(imageTraits({ 'io.sorna.nvidia.enabled': 'yes' }).cuda).to.equal(true);
    expect(imageTraits({ 'ai.backend.accelerators': 'cuda' }).cuda).to.equal(true);
    expect(imageTraits({ 'ai.backend.accelerators': 'rocm, cuda' }).cuda).to.equal(true);
    expect(imageTraits({ 'io.sorna.nvidia.enabled': 'no' }).cuda).to.equal(false);
    expect(imageTraits({}).cuda).to.equal(false);
    expect(imageTraits({ 'ai.backend.envs.gpucount': 'GPU_COUNT, N_GPUS' }).gpuCountEnvs).to.deep.equal(['GPU_COUNT', 'N_GPUS']);
  });

  it('puts the devices, their variables, CpusetMems and the gpu-set label into the container request', async () => {
    const gpus = new GpuService(fixtureCuda('dgx8'), silentLogger(), await readNodeCpus(path.join(fixtureRoot('dgx8'), 'sys')));
    await gpus.refresh();
    const spec = { ...parseKernelConfig({ lang: 'cuda:11', limits: { gpu_slot: 2 } }, 'lablup/kernel-', '/mnt'), gpuSet: [6, 7] };
    const req = containerRequest({
      agentId: 'i-1',
      kernelId: 'k1',
      spec,
      cpuSet: [10, 11],
      traits: imageTraits({ 'ai.backend.accelerators': 'cuda', 'ai.backend.envs.gpucount': 'GPU_COUNT' }),
      scratchDir: '/s/k1',
      kernelUid: 1000,
      publishHost: '127.0.0.1',
      security: {
        noNewPrivileges: true,
        capabilities: [],
        seccomp: 'default',
        pidsLimit: 0,
        nofileLimit: 0,
        log: { maxBytes: 1024, maxFiles: 1 },
      },
      shmMiB: 64,
      createdAt: 1,
      gpu: gpus.hostConfig(spec.gpuSet, [10, 11]),
    });
    expect(req.labels['io.compute-agent.gpu-set']).to.equal('6,7');
    expect(req.env).to.include.members(['GPU_COUNT=2', 'CUDA_VISIBLE_DEVICES=0,1', 'LD_LIBRARY_PATH=/usr/local/nvidia/lib64']);
    expect(req.devices!.slice(0, 2).map((d) => d.PathInContainer)).to.deep.equal(['/dev/nvidia6', '/dev/nvidia7']);
    expect(req.cpusetMems).to.equal('1');
    expect(req.binds[0]).to.equal('/s/k1:/home/work:rw');
    // No GPU: no device fields at all.
    const plain = containerRequest({
      ...{
        agentId: 'i-1',
        kernelId: 'k2',
        spec: { ...spec, gpuSet: null, gpuCount: 0 },
        cpuSet: [0],
        traits: imageTraits({}),
        scratchDir: '/s/k2',
        kernelUid: 1000,
        publishHost: '127.0.0.1',
        security: {
          noNewPrivileges: true,
          capabilities: [],
          seccomp: 'default',
          pidsLimit: 0,
          nofileLimit: 0,
          log: { maxBytes: 1024, maxFiles: 1 },
        },
        shmMiB: 64,
        createdAt: 1,
      },
      gpu: gpus.hostConfig(null, [0]),
    });
    expect(plain).not.to.have.any.keys('devices', 'deviceRequests', 'cpusetMems', 'runtime');
    expect(plain.env.join(' ')).not.to.match(/CUDA|NVIDIA/);
  });

  it('words the agent check: a CPU node passes with why, a broken GPU node fails with the fix', async () => {
    const empty = await tempDir();
    const cpuNode = await gpuCheck(fixtureCuda('dgx8', { smi: path.join(empty, 'nvidia-smi'), procRoot: empty }));
    expect(cpuNode.ok).to.equal(true);
    expect(cpuNode.detail).to.match(/^none: CPU fallback, gpu_slots 0 \(no NVIDIA driver .*\); to use GPUs: install the NVIDIA driver/);
    const broken = await gpuCheck(fixtureCuda('dgx8', { smi: await fakeSmi('exit 9') }));
    expect(broken).to.include({ ok: false });
    expect(broken.fix).to.match(/run nvidia-smi by hand/);
    const good = await gpuCheck(fixtureCuda('dgx8', { allow: () => ['0', '1'] }));
    expect(good).to.deep.equal({
      ok: true,
      detail: `device-nodes: 2 GPU(s) (NVIDIA A100-SXM4-40GB, 6 kept back by gpu_allow); no NVIDIA container runtime; device nodes under ${fixtureRoot('dgx8')}/dev and 6 driver libraries bind-mounted`,
    });
  });
});

describe('agent gpus (the probe gpu-check.sh prints)', () => {
  it('prints the devices, the path with its reason and the Docker arguments for one device', async () => {
    const text = formatProbe(await probeGpus(fixtureCuda('any1')));
    const dev = path.join(fixtureRoot('any1'), 'dev');
    expect(text.split('\n').slice(0, 4)).to.deep.equal([
      'devices: 1 usable',
      `  0  Tesla T4  GPU-0b4f6d2e-7a1c-4b9e-9d3f-2a6c8e1f4b70  bus 0000:00:1e.0  numa any  15360 MiB  /dev/nvidia0`,
      `path: device-nodes (no NVIDIA container runtime; device nodes under ${dev} and 6 driver libraries bind-mounted)`,
      'better: for DeviceRequests: install nvidia-container-toolkit and run nvidia-ctk runtime configure --runtime=docker, then restart dockerd',
    ]);
    expect(text).to.include(
      `docker arguments for device 0:\n  --env CUDA_VISIBLE_DEVICES=0\n  --env LD_LIBRARY_PATH=/usr/local/nvidia/lib64\n  --device ${dev}/nvidia0:/dev/nvidia0:mrw\n  --device ${dev}/nvidiactl:/dev/nvidiactl:mrw`,
    );
    expect(text).to.include('  --volume /usr/lib/x86_64-linux-gnu/libcuda.so.1:/usr/local/nvidia/lib64/libcuda.so.1:ro');
    const runtime = formatProbe(
      await probeGpus(fixtureCuda('any1', { docker: async () => ({ runtimes: ['nvidia'], apiVersion: '1.41' }) })),
    );
    expect(runtime).to.include(
      `  --gpus '"device=GPU-0b4f6d2e-7a1c-4b9e-9d3f-2a6c8e1f4b70"'  (HostConfig.DeviceRequests: driver nvidia, capabilities [["gpu"]])`,
    );
    const empty = await tempDir();
    const none = await probeGpus(fixtureCuda('any1', { smi: path.join(empty, 'nvidia-smi'), procRoot: empty }));
    expect(none.oneDevice).to.equal(null);
    expect(formatProbe(none)).to.match(/^devices: 0 usable\npath: none \(no NVIDIA driver .*\)\nfix: install the NVIDIA driver/);
  });
});
