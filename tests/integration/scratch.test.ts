/**
 * Scratch quotas (scratch_type) against real loop mounts, tmpfs and Docker:
 * a hostfile kernel that writes past its quota gets ENOSPC in its own home
 * while another kernel and the agent go on writing, and its stats are the
 * file system's; a failed create and a destroy leave no mount, loop device
 * or file; after a SIGKILL of the agent a restart finds the homes of running
 * kernels mounted (or mounts them again) and cleans those of dead or removed
 * ones; a
 * memory kernel gets a tmpfs of its size, charged to the memory book beside
 * its limit (after a restart and a re-adoption too) and bounding uploads
 * too; an agent that cannot make hostfile
 * homes refuses to start and `agent check` says why.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import { writeFileAtomic } from '../../src/util/atomic-write.js';
import { nodeMemoryMiB } from '../../src/node/memory.js';
import { Agent } from '../../src/agent.js';
import { validateOptions } from '../../src/config/options.js';
import {
  agentOptions,
  loopbackAgentFlags,
  AGENT_BIN,
  ETCD_ADDR,
  freePort,
  onCleanup,
  remoteError,
  removeContainersOf,
  requireEtcd,
  spawnAgent,
  startAgent,
  tempScratch,
  testEtcd,
  testLogger,
  TEST_IMAGE_LANG,
  uniqueName,
} from '../helpers/env.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { cleanMountsUnder, loopsUnder, mountsUnder } from '../helpers/scratch-mounts.js';

const MiB = 1024 * 1024;
const MEM_CAPACITY = 300; // MiB schedulable in the memory test: mem_reserve is the node's memory minus this
const config = (limits: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  lang: TEST_IMAGE_LANG,
  limits: { cpu_slot: 1, mem_slot: 128, ...limits },
  mounts: [],
  environ: {},
  ...extra,
});

/** Python run in a kernel: writes `mib` MiB to the home in 1 MiB steps; prints the MiB written and how it ended. */
const fill = (name: string, mib: number) =>
  `import errno\nn = 0\ntry:\n  with open(${JSON.stringify(name)}, 'wb') as f:\n    for _ in range(${mib}):\n      f.write(b'x' * 1048576); f.flush(); n += 1\n  print(n, 'ok')\n` +
  `except OSError as e:\n  print(n, errno.errorcode[e.errno])`;

/**
 * A scratch root whose mounts and loop devices are removed after the test
 * even when it fails (registered after tempScratch, so it runs before the
 * folder is removed); the test's last check is that none are left.
 */
async function scratchRoot(): Promise<string> {
  const dir = await fs.realpath(await tempScratch());
  cleanMountsUnder(dir);
  return dir;
}

/** Nothing of the agent's homes is left: no mount, no loop device, no backing file, no home folder. */
async function expectClean(root: string, agentId: string): Promise<void> {
  expect(mountsUnder(root)).to.deep.equal([]);
  expect(loopsUnder(root)).to.deep.equal([]);
  expect(await fs.readdir(path.join(root, '.scratch-files', agentId)).catch(() => [])).to.deep.equal([]);
  expect((await fs.readdir(root)).filter((n) => !n.startsWith('.'))).to.deep.equal([]);
}

describe('scratch quotas', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('hostfile: a kernel past its quota gets ENOSPC while another kernel and the agent write on; destroys and a failed create leave nothing', async () => {
    const root = await scratchRoot();
    const { client, agentId } = await startAgent({ scratchRoot: root }, async (ns) => {
      await ns.put('config/agent/scratch_type').value('hostfile');
      await ns.put('config/agent/scratch_size').value('32');
      await ns.put('config/agent/cpu_overcommit').value('2'); // a third kernel on this 2-core machine
      await ns.put('config/agent/runner_ready_timeout').value('30'); // a loaded machine
    });
    const small = uniqueName('k');
    const other = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, small, config({ scratch_mib: 16 }));
    await client.callWithTimeout(60_000, methods.create_kernel, other, config());
    const mounts = mountsUnder(root);
    expect(mounts).to.have.length(2);
    for (const m of mounts) expect(m).to.match(/ ext4 \/dev\/loop\d+$/);
    // sizes: limits.scratch_mib, else scratch_size (ext4's own metadata takes a little of each)
    const size = async (id: string) =>
      Number(consoleText(await runToEnd(client, id, "import os\ns = os.statvfs('/home/work')\nprint(s.f_blocks * s.f_frsize)"), 'stdout'));
    expect(await size(small)).to.be.within(12 * MiB, 16 * MiB);
    expect(await size(other)).to.be.within(24 * MiB, 32 * MiB);

    const full = consoleText(await runToEnd(client, small, fill('big.bin', 24)), 'stdout').trim();
    expect(full).to.match(/^1[0-6] ENOSPC$/);
    // the other kernel, the agent's uploads and the agent's own files go on
    expect(consoleText(await runToEnd(client, other, fill('more.bin', 8)), 'stdout').trim()).to.equal('8 ok');
    await client.call(methods.upload_file, other, 'up.bin', Buffer.alloc(2 * MiB, 7));
    await writeFileAtomic(path.join(root, 'agent-file'), Buffer.alloc(4 * MiB, 1));
    await fs.rm(path.join(root, 'agent-file'));
    const up = await remoteError(client.call(methods.upload_file, small, 'up.bin', Buffer.alloc(2 * MiB, 7)));
    expect(up.remoteType).to.equal('agent.NoSpace');
    expect(await client.call(methods.ping, 'alive')).to.equal('alive');

    // the stats are the file system's figures (statfs of the mounted home)
    const stats = (await client.call(methods.get_node_stats)).kernels;
    expect(stats[small]!.io_cur_scratch_size).to.be.within(12 * MiB, 16 * MiB);
    expect(stats[other]!.io_cur_scratch_size).to.be.within(10 * MiB, 16 * MiB);

    // a create that fails after its home was mounted gives the home back
    const failed = await remoteError(
      client.callWithTimeout(60_000, methods.create_kernel, uniqueName('k'), config({}, { bootstrap_script: 'exit 3' })),
    );
    expect(failed.remoteType).to.equal('agent.KernelCreationFailed');
    expect(mountsUnder(root)).to.have.length(2);
    expect(await fs.readdir(path.join(root, '.scratch-files', agentId))).to.have.length(2);

    const last = await client.call(methods.destroy_kernel, small);
    expect(last!.io_max_scratch_size)
      .to.be.at.least(last!.io_cur_scratch_size)
      .and.within(12 * MiB, 16 * MiB);
    await client.call(methods.destroy_kernel, other);
    await expectClean(root, agentId);
  });

  it('hostfile: after a SIGKILL of the agent, a restart keeps the homes of running kernels (mounted, or mounted again) and cleans those of dead ones', async () => {
    const root = await scratchRoot();
    const namespace = uniqueName('test');
    const agentId = uniqueName('i-test');
    const { ns } = testEtcd(namespace);
    await ns.put('config/agent/scratch_type').value('hostfile');
    await ns.put('config/agent/scratch_size').value('16');
    await ns.put('config/agent/cpu_overcommit').value('2'); // 4 kernels on this 2-core machine
    await ns.put('config/agent/runner_ready_timeout').value('30');
    removeContainersOf(agentId);
    const port = await freePort();
    const args = await loopbackAgentFlags({ namespace, agentId, port, scratchRoot: root });
    const first = spawnAgent(args);
    await first.waitFor(/"message":"agent running"/, 30_000);
    const client = new AgentClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 30_000 });
    onCleanup(() => client.close());
    const [kept, unmounted, dead, gone] = [uniqueName('k'), uniqueName('k'), uniqueName('k'), uniqueName('k')];
    const infos = await Promise.all(
      [kept, unmounted, dead, gone].map((id) => client.callWithTimeout(60_000, methods.create_kernel, id, config())),
    );
    for (const id of [kept, unmounted]) await runToEnd(client, id, "open('before.txt', 'w').write('written before')");
    first.child.kill('SIGKILL');
    await first.exited;
    await new Docker().getContainer(infos[2]!.container_id).kill(); // dies while no agent watches
    await new Docker().getContainer(infos[3]!.container_id).remove({ force: true }); // and one is removed behind its back
    execFileSync('umount', ['-l', path.join(root, unmounted)]); // an operator's (or a reboot's) doing: the container keeps its view

    const second = spawnAgent(args);
    await second.waitFor(/"message":"agent running"/, 30_000);
    expect(second.stderr()).to.match(/"running":2/);
    expect(second.stderr()).to.match(/"home":"mounted"/);
    expect(second.stderr()).to.match(/"home":"reattached"/);
    const targets = mountsUnder(root).map((l) => l.split(' ')[0]);
    expect(targets.sort()).to.deep.equal([path.join(root, kept), path.join(root, unmounted)].sort());
    expect((await fs.readdir(path.join(root, '.scratch-files', agentId))).sort()).to.deep.equal(
      [`${kept}.ext4`, `${unmounted}.ext4`].sort(),
    );
    for (const id of [dead, gone])
      expect(
        await fs.access(path.join(root, id)).then(
          () => true,
          () => false,
        ),
      ).to.equal(false);
    for (const id of [kept, unmounted]) {
      // the host's home and the kernel's are one file system again: what the kernel writes now, the agent reads
      expect(readFileSync(path.join(root, id, 'before.txt'), 'utf8')).to.equal('written before');
      await runToEnd(client, id, "open('after.txt', 'w').write('written after')");
      expect(readFileSync(path.join(root, id, 'after.txt'), 'utf8')).to.equal('written after');
    }
    await client.call(methods.destroy_kernel, kept);
    await client.call(methods.destroy_kernel, unmounted);
    await expectClean(root, agentId);
  });

  it('memory: a kernel gets a tmpfs of its size, charged to the memory book, full at that size for it and for uploads, kept by a restart, gone with the kernel', async () => {
    const root = await scratchRoot();
    const { client, agent, agentId, namespace } = await startAgent({ scratchRoot: root }, async (ns) => {
      await ns.put('config/agent/scratch_type').value('memory');
      await ns.put('config/agent/runner_ready_timeout').value('30');
      await ns.put('config/agent/mem_reserve').value(String(nodeMemoryMiB() - MEM_CAPACITY));
    });
    const memFree = async (c = client) => (await c.call(methods.get_node_stats)).slots.mem_free_mib;
    const id = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, id, config({ scratch_mib: 16 }));
    expect(mountsUnder(root)).to.deep.equal([`${path.join(root, id)} tmpfs compute-agent-scratch.${agentId}`]);
    expect(await memFree()).to.equal(MEM_CAPACITY - 128 - 16); // the limit and the home
    // what the book holds is what is promised: a kernel whose limit fits but whose home does not is refused, retryably
    const refused = await remoteError(client.call(methods.create_kernel, uniqueName('k'), config({ scratch_mib: 100 })));
    expect(refused.remoteType).to.equal('agent.InsufficientResources');
    expect(String(refused.remoteArgs[0])).to.match(/not enough memory for this kernel: 228 MiB requested, 156 of 300 MiB/);
    const never = await remoteError(client.call(methods.create_kernel, uniqueName('k'), config({ scratch_mib: 200 })));
    expect(String(never.remoteArgs[0])).to.match(
      /asks for 328 MiB of memory \(128 MiB and its 200 MiB memory home\), more than this node will ever hold/,
    );
    // the host's writes are bounded too: an upload past the size is agent.NoSpace and leaves nothing
    const up = await remoteError(client.call(methods.upload_file, id, 'up.bin', Buffer.alloc(20 * MiB, 7)));
    expect(up.remoteType).to.equal('agent.NoSpace');
    expect((await fs.readdir(path.join(root, id))).filter((n) => n === 'up.bin' || n.startsWith('.upload-'))).to.deep.equal([]);
    const out = consoleText(
      await runToEnd(client, id, `import os\ns = os.statvfs('/home/work')\nprint(s.f_blocks * s.f_frsize)\n${fill('big.bin', 24)}`),
      'stdout',
    );
    expect(out.trim().split('\n')).to.deep.equal([String(16 * MiB), '16 ENOSPC']);
    expect((await client.call(methods.get_node_stats)).kernels[id]!.io_cur_scratch_size).to.equal(16 * MiB);
    // a restart keeps the home (a new container on the same mount)
    await client.callWithTimeout(60_000, methods.restart_kernel, id, config({ scratch_mib: 16 }));
    expect(mountsUnder(root)).to.have.length(1);
    expect(await memFree()).to.equal(MEM_CAPACITY - 128 - 16);
    expect(consoleText(await runToEnd(client, id, "import os\nprint(os.path.getsize('big.bin'))"), 'stdout').trim()).to.match(
      /^1[56]\d{6}$/,
    );
    // a new agent of the same id re-adopts the kernel with its home's charge
    await agent.stop();
    const raw = await agentOptions({ agentId, namespace, scratchRoot: root });
    const again = new Agent(await validateOptions(raw), testLogger());
    onCleanup(() => again.stop());
    await again.start();
    const client2 = new AgentClient(`tcp://127.0.0.1:${raw.agentPort}`, { timeoutMs: 5000 });
    onCleanup(() => client2.close());
    expect(await memFree(client2)).to.equal(MEM_CAPACITY - 128 - 16);
    await client2.call(methods.destroy_kernel, id);
    expect(await memFree(client2)).to.equal(MEM_CAPACITY);
    await expectClean(root, agentId);
  });

  it('hostfile where mkfs.ext4 and losetup cannot be found: agent check fails that line and the agent refuses to start', async () => {
    const namespace = uniqueName('test');
    const { ns } = testEtcd(namespace);
    await ns.put('config/agent/scratch_type').value('hostfile');
    const root = await tempScratch();
    const env = { PATH: '/usr/bin:/bin' }; // no sbin: neither mkfs.ext4 nor losetup
    const args = [
      '--etcd-addr',
      ETCD_ADDR,
      '--namespace',
      namespace,
      '--agent-id',
      uniqueName('i-test'),
      '--agent-port',
      String(await freePort()),
      '--bind-host',
      '127.0.0.1',
      '--scratch-root',
      root,
    ];
    const check = execFileSyncStatus(process.execPath, [AGENT_BIN, 'check', ...args], env);
    expect(check.code).to.equal(1);
    expect(check.out).to.match(
      /\[FAIL\] scratch quotas \(hostfile\)\s+scratch_type is hostfile, which cannot work here: mkfs.ext4 is not installed/,
    );
    const agent = spawnAgent(args, env);
    expect(await agent.exited).to.equal(1);
    expect(agent.stderr()).to.match(
      /scratch_type is hostfile, which cannot work on this host: mkfs.ext4 is not installed \(apt-get install e2fsprogs\); losetup is not installed/,
    );
  });
});

/** Runs a command to its end; its exit code and stdout. */
function execFileSyncStatus(cmd: string, args: string[], env: NodeJS.ProcessEnv): { code: number; out: string } {
  try {
    return { code: 0, out: execFileSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env } }) };
  } catch (err) {
    const e = err as { status: number; stdout: string };
    return { code: e.status, out: e.stdout };
  }
}
