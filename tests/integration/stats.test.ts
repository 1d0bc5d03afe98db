/**
 * CgroupStats against a real container on this host's Docker: the figures
 * move the way the kernel's work says they should, and a removed container
 * reads as the figures last read of it (zeros to a reader that never read
 * it) instead of throwing. A second case feeds a fake cgroup v2
 * tree, the layout of the other nodes, which this host cannot show.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import { CgroupStats } from '../../src/kernels/stats.js';
import { eventually, onCleanup, tempScratch, TEST_IMAGE_LANG, TEST_IMAGE_PREFIX } from '../helpers/env.js';

const MiB = 1024 * 1024;

// Allocates and touches ~50 MiB (bytes * n is written, unlike bytearray(n)),
// burns ~0.35 s of CPU, writes 5 MiB to the scratch dir, then signals and sleeps.
const KERNEL_CODE = `
import os, time
ballast = b'x' * (50 << 20)
t = time.process_time()
while time.process_time() - t < 0.35:
    pass
with open('/home/work/data.bin', 'wb') as f:
    f.write(os.urandom(5 << 20))
    f.flush()
    os.fsync(f.fileno())
open('/home/work/ready', 'w').close()
time.sleep(3600)
`;

describe('cgroup stats of a kernel container', () => {
  const docker = new Docker();

  before(async () => {
    await docker.ping().catch((err: unknown) => {
      throw new Error(`Docker does not answer: ${String(err)}; run deploy/dev/up.sh first`);
    });
  });

  it('reads cpu, memory, scratch and net figures of a live container, and the last ones read once it is gone', async function () {
    this.timeout(60_000);
    const scratch = await tempScratch();
    await fs.chmod(scratch, 0o777);
    const container = await docker.createContainer({
      Image: `${TEST_IMAGE_PREFIX}${TEST_IMAGE_LANG}`,
      Cmd: ['python3', '-c', KERNEL_CODE],
      Labels: { 'compute-agent.test': '1' },
      HostConfig: { Memory: 128 * MiB, Binds: [`${scratch}:/home/work`] },
    });
    onCleanup(() =>
      container.remove({ force: true }).catch((err: { statusCode?: number }) => {
        if (err.statusCode !== 404) throw err;
      }),
    );
    await container.start();
    const pid = (await container.inspect()).State.Pid;
    await eventually('the kernel to finish its work', () => fs.access(path.join(scratch, 'ready')).then(() => true), 30_000);

    const stats = new CgroupStats();
    expect(stats.version).to.equal('v1');
    const target = { containerId: container.id, pid, scratchDir: scratch };
    const s = await stats.read(target);
    expect(s.cpu_used, 'cpu_used (ms)').to.be.at.least(200);
    expect(s.mem_max_bytes, 'mem_max_bytes').to.be.at.least(40 * MiB);
    expect(s.mem_cur_bytes, 'mem_cur_bytes').to.be.above(0);
    expect(s.io_cur_scratch_size, 'io_cur_scratch_size').to.be.at.least(5 * MiB);
    expect(s.io_max_scratch_size).to.be.at.least(s.io_cur_scratch_size);
    for (const k of ['net_rx_bytes', 'net_tx_bytes', 'io_read_bytes', 'io_write_bytes'] as const) {
      expect(s[k], k).to.be.a('number').and.at.least(0);
    }

    // The max is the largest size seen: it stays when the scratch dir shrinks.
    await fs.rm(path.join(scratch, 'data.bin'));
    const shrunk = await stats.read(target);
    expect(shrunk.io_cur_scratch_size).to.be.below(MiB);
    expect(shrunk.io_max_scratch_size).to.equal(s.io_max_scratch_size);

    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = process.hrtime.bigint();
      await stats.read(target);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    console.log(`      read() median ${times[10]!.toFixed(2)} ms, max ${times[19]!.toFixed(2)} ms over 20 reads`);

    const lastRead = await stats.read(target);
    await container.remove({ force: true });
    const gone = await stats.read(target);
    const cgroupFigures = [
      'cpu_used',
      'mem_max_bytes',
      'mem_cur_bytes',
      'io_read_bytes',
      'io_write_bytes',
      'net_rx_bytes',
      'net_tx_bytes',
    ] as const;
    // A container that died reports the figures last read of it, never zeros (issue 28).
    for (const k of cgroupFigures) expect(gone[k], k).to.equal(lastRead[k]);
    expect(gone.cpu_used, 'cpu_used (ms)').to.be.at.least(200);
    // A reader that never read it has nothing to go on: zeros.
    const fresh = await new CgroupStats().read(target);
    for (const k of cgroupFigures) expect(fresh[k], k).to.equal(0);
    stats.forget(container.id);
    expect((await stats.read(target)).io_max_scratch_size).to.equal(gone.io_cur_scratch_size);
  });

  it('reads the cgroup v2 layout (systemd scope, no memory.peak) from a fake tree', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'fake-cgroup-'));
    onCleanup(() => fs.rm(root, { recursive: true, force: true }));
    const id = randomBytes(32).toString('hex');
    const dir = path.join(root, 'system.slice', `docker-${id}.scope`);
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(root, 'cgroup.controllers'), 'cpu io memory pids\n');
    await fs.writeFile(path.join(dir, 'cpu.stat'), 'usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n');
    await fs.writeFile(path.join(dir, 'memory.current'), '52428800\n');
    await fs.writeFile(
      path.join(dir, 'io.stat'),
      '8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n259:0 rbytes=1000 wbytes=2000 rios=3 wios=4 dbytes=0 dios=0\n',
    );

    const stats = new CgroupStats({ cgroupRoot: root });
    expect(stats.version).to.equal('v2');
    const s = await stats.read({ containerId: id, pid: null, scratchDir: path.join(root, 'no-such-dir') });
    expect(s).to.deep.equal({
      cpu_used: 1234,
      mem_max_bytes: 52428800,
      mem_cur_bytes: 52428800,
      net_rx_bytes: 0,
      net_tx_bytes: 0,
      io_read_bytes: 1100,
      io_write_bytes: 2200,
      io_max_scratch_size: 0,
      io_cur_scratch_size: 0,
    });
    await fs.writeFile(path.join(dir, 'memory.peak'), '60000000\n');
    expect((await stats.read({ containerId: id, pid: null, scratchDir: root })).mem_max_bytes).to.equal(60000000);
  });
});
