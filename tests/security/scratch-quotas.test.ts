/**
 * A kernel that fills its quota harms no other home (docs/kernels.rst,
 * "Scratch types"), against real loop mounts and Docker: on a small scratch
 * root of the test's own, hostfile homes are allocated in full when made
 * (their backing files hold every block, and no trim can punch them out), a
 * home the root cannot back is refused retryably before anything is made,
 * and two kernels that write what their quotas allow both keep all they
 * wrote: the one that writes on gets ENOSPC in its own home and its uploads
 * agent.NoSpace, the other writes on, and the host's kernel log has no ext4
 * error for any of the file systems involved.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { remoteError, requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { cleanMountsUnder, loopsUnder, mountsUnder } from '../helpers/scratch-mounts.js';
import { smallFs } from '../helpers/small-fs.js';

const MiB = 1024 * 1024;
const HOME_MIB = 40; // an ext4 of 40 MiB holds about 31.9 MiB
const config = { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 128, scratch_mib: HOME_MIB }, mounts: [], environ: {} };

/** Python run in a kernel: writes `mib` MiB to the home in 1 MiB steps, synced; prints the MiB written and how it ended. */
const fill = (name: string, mib: number) =>
  `import errno, os\nn = 0\ntry:\n  with open(${JSON.stringify(name)}, 'wb') as f:\n    for _ in range(${mib}):\n      f.write(b'x' * 1048576); f.flush(); n += 1\n    os.fsync(f.fileno())\n  print(n, 'ok')\n` +
  `except OSError as e:\n  print(n, errno.errorcode[e.errno])`;

/** Python run in a kernel: the size of a file and whether every byte of it is what {@link fill} wrote. */
const check = (name: string) => `d = open(${JSON.stringify(name)}, 'rb').read()\nprint(len(d) // 1048576, d.count(b'x') == len(d))`;

/** The kernel log's lines (dmesg), for what a test adds to it. */
function kernelLog(): string[] {
  return execFileSync('dmesg', { encoding: 'utf8' }).split('\n');
}

describe('scratch quotas against a kernel that fills its own', function () {
  this.timeout(180_000);
  before(requireEtcd);

  it('hostfile: homes are allocated in full, one the root cannot back is refused before anything is made, and a full home harms no other', async () => {
    const root = await fs.realpath(await smallFs(112)); // about 97 MiB free: two 40 MiB homes and scratch_reserve, not three
    cleanMountsUnder(root);
    const rootDevice = execFileSync('findmnt', ['-n', '-o', 'SOURCE', root], { encoding: 'utf8' }).trim();
    const logBefore = kernelLog().length;
    const { client, agentId } = await startAgent({ scratchRoot: root }, async (ns) => {
      await ns.put('config/agent/scratch_type').value('hostfile');
      await ns.put('config/agent/scratch_reserve').value('4');
      await ns.put('config/agent/runner_ready_timeout').value('30'); // a loaded machine
    });
    const [a, b] = [uniqueName('k'), uniqueName('k')];
    await client.callWithTimeout(60_000, methods.create_kernel, a, config);
    await client.callWithTimeout(60_000, methods.create_kernel, b, config);

    // each backing file holds all its blocks, and its loop device takes no discard (a trim would punch them out)
    const filesDir = path.join(root, '.scratch-files', agentId);
    for (const id of [a, b]) expect((await fs.stat(path.join(filesDir, `${id}.ext4`))).blocks * 512).to.be.at.least(HOME_MIB * MiB);
    const homeDevices = mountsUnder(root).map((l) => l.split(' ')[2]!);
    expect(homeDevices).to.have.length(2);
    for (const dev of homeDevices)
      expect(execFileSync('cat', [`/sys/block/${path.basename(dev)}/queue/discard_max_bytes`], { encoding: 'utf8' }).trim()).to.equal('0');

    // a third home would promise more than the root has: refused, retryably, before anything is made
    const entries = async () => [...(await fs.readdir(root)), ...(await fs.readdir(filesDir))].sort();
    const before = await entries();
    const refused = await remoteError(client.callWithTimeout(60_000, methods.create_kernel, uniqueName('k'), config));
    expect(refused.remoteType).to.equal('agent.InsufficientResources');
    expect(refused.retryable).to.equal(true);
    expect(String(refused.remoteArgs[0])).to.match(
      /has \d+ MiB free, less than a 40 MiB hostfile home \(allocated in full when made\) and scratch_reserve \(4 MiB\) take/,
    );
    expect(await entries()).to.deep.equal(before);
    expect(mountsUnder(root)).to.have.length(2);
    expect(loopsUnder(root)).to.have.length(2);

    // both kernels write what their quotas allow; one writes on past it
    expect(consoleText(await runToEnd(client, a, fill('a.bin', 28)), 'stdout').trim()).to.equal('28 ok');
    expect(consoleText(await runToEnd(client, b, fill('b.bin', 28)), 'stdout').trim()).to.equal('28 ok');
    expect(consoleText(await runToEnd(client, a, fill('more.bin', 16)), 'stdout').trim()).to.match(/^[0-4] ENOSPC$/);
    const up = await remoteError(client.call(methods.upload_file, a, 'up.bin', Buffer.alloc(2 * MiB, 7)));
    expect(up.remoteType).to.equal('agent.NoSpace');
    expect(consoleText(await runToEnd(client, b, fill('b2.bin', 2)), 'stdout').trim()).to.equal('2 ok');
    await client.call(methods.upload_file, b, 'up.bin', Buffer.alloc(MiB, 7));

    // nothing was lost: every byte written is there, and the host's kernel log has no ext4 error for these file systems
    expect(consoleText(await runToEnd(client, a, check('a.bin')), 'stdout').trim()).to.equal('28 True');
    expect(consoleText(await runToEnd(client, b, check('b.bin')), 'stdout').trim()).to.equal('28 True');
    const ours = [rootDevice, ...homeDevices].map((d) => path.basename(d));
    const errors = kernelLog()
      .slice(logBefore - 1)
      .filter((l) => ours.some((d) => new RegExp(`\\b${d}\\b`).test(l)))
      .filter((l) => /error|data loss|Aborting journal|read-only|I\/O/i.test(l));
    expect(errors).to.deep.equal([]);

    await client.call(methods.destroy_kernel, a);
    await client.call(methods.destroy_kernel, b);
    expect(mountsUnder(root)).to.deep.equal([]);
    expect(await fs.readdir(filesDir)).to.deep.equal([]);
  });
});
