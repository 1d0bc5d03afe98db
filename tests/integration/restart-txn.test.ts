/**
 * A restart is a transaction (docs/kernels.rst, "What survives what"): a
 * restart that cannot take what its new container needs (host ports, an
 * inode for environ.txt) fails retryably and leaves the kernel running as it
 * was, its container, home and files untouched. And reset and destroy cover
 * creations under way: no kernel outlives them.
 */
import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import {
  containersOf,
  coresHeld,
  eventually,
  kernelIds,
  nextPortBlock,
  remoteError,
  requireEtcd,
  startAgent,
  TEST_IMAGE_LANG,
  uniqueName,
} from '../helpers/env.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { smallFs } from '../helpers/small-fs.js';
import { homesIn } from '../helpers/leftovers.js';

const config = { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 128 }, mounts: [], environ: {} };

/**
 * Four ports of the block, one after the other, that nothing holds now: a kernel of an earlier test of this process
 * that used the same block may still hold its first ports while it is removed (seen once: the create failed).
 */
async function fourFreePorts(block: { lo: number; hi: number }): Promise<string> {
  const bindable = (port: number) =>
    new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '0.0.0.0', () => srv.close(() => resolve(true)));
    });
  for (let lo = block.lo; lo + 3 <= block.hi; lo += 4) {
    let free = true;
    for (let p = lo; p < lo + 4 && free; p++) free = await bindable(p);
    if (free) return `${lo}-${lo + 3}`;
  }
  throw new Error(`no four free ports in ${block.lo}-${block.hi}`);
}

describe('restart_kernel as a transaction', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('with no free host port fails retryably and leaves the kernel running as it was', async () => {
    const range = await fourFreePorts(nextPortBlock()); // room for one kernel's four ports
    const { client, agent, agentId } = await startAgent({}, (ns) =>
      ns
        .put('config/agent/container_port_range')
        .value(range)
        .then(() => undefined),
    );
    const id = uniqueName('k');
    const info = await client.callWithTimeout(60_000, methods.create_kernel, id, config);
    await client.call(methods.upload_file, id, 'keep.txt', Buffer.from('kept'));
    const err = await remoteError(client.callWithTimeout(60_000, methods.restart_kernel, id, config));
    expect(err.remoteType).to.equal('agent.InsufficientResources');
    expect(err.retryable).to.equal(true);
    expect(err.message).to.match(/the kernel runs on as it was/);
    expect((await containersOf(agentId)).map((c) => [c.Id, c.State])).to.deep.equal([[info.container_id, 'running']]);
    expect(await kernelIds(client)).to.deep.equal([id]);
    expect(consoleText(await runToEnd(client, id, 'print(open("keep.txt").read())'), 'stdout')).to.equal('kept\n');
    expect(await coresHeld(client)).to.equal(1);
    expect(await fs.readFile(path.join(agent.options.scratchRoot, id, 'keep.txt'), 'utf8')).to.equal('kept');
    await client.call(methods.destroy_kernel, id);
  });

  it('with no inode left for environ.txt fails retryably and leaves the kernel and its files as they were', async () => {
    const scratchRoot = await smallFs(32, 128);
    const { client, agentId } = await startAgent({ scratchRoot }, (ns) =>
      ns
        .put('config/agent/scratch_reserve')
        .value('1')
        .then(() => undefined),
    );
    const id = uniqueName('k');
    const info = await client.callWithTimeout(60_000, methods.create_kernel, id, config);
    const home = path.join(scratchRoot, id);
    // the kernel's own files take every inode left
    const written = consoleText(
      await runToEnd(
        client,
        id,
        'import os\nn = 0\ntry:\n    while True:\n        open(f"f{n}", "w").close(); n += 1\nexcept OSError:\n    pass\nprint(n)',
      ),
      'stdout',
    );
    const files = Number(written);
    expect(files).to.be.greaterThan(10);
    expect((await fs.statfs(scratchRoot)).ffree).to.equal(0);
    const err = await remoteError(client.callWithTimeout(60_000, methods.restart_kernel, id, config));
    expect(err.remoteType).to.equal('agent.InsufficientResources');
    expect(err.message).to.match(/the kernel runs on as it was/);
    expect((await containersOf(agentId)).map((c) => c.Id)).to.deep.equal([info.container_id]);
    expect((await fs.readdir(home)).filter((f) => /^f\d+$/.test(f))).to.have.length(files);
    expect(consoleText(await runToEnd(client, id, 'print("alive")'), 'stdout')).to.equal('alive\n');
    // once inodes are free again the restart goes through, on the same home
    await runToEnd(
      client,
      id,
      'import os\nfor f in os.listdir("."):\n    f.startswith("f") and f[1:].isdigit() and int(f[1:]) >= 20 and os.remove(f)',
    );
    const restarted = await client.callWithTimeout(60_000, methods.restart_kernel, id, config);
    expect(restarted.container_id).to.not.equal(info.container_id);
    expect((await fs.readdir(home)).filter((f) => /^f\d+$/.test(f))).to.have.length(20);
    await client.call(methods.destroy_kernel, id);
  });
});

describe('reset and destroy during creations', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('reset while three creates are under way leaves no kernel, container or core held', async () => {
    const { client, agent, agentId } = await startAgent();
    const ids = [uniqueName('k'), uniqueName('k'), uniqueName('k')];
    // each made and then destroyed by the reset, or refused; handled at once so that a refusal is not an unhandled rejection
    const creates = ids.map((id) => client.callWithTimeout(60_000, methods.create_kernel, id, config).catch((err: unknown) => err));
    await eventually('the three creates to be under way', () => agent.kernelService!.stateCounts().creating === 3, 30_000, 5);
    await client.callWithTimeout(60_000, methods.reset);
    await Promise.all(creates);
    expect(await containersOf(agentId)).to.have.length(0);
    expect(await kernelIds(client)).to.deep.equal([]);
    expect(await coresHeld(client)).to.equal(0);
    expect(homesIn(agent.options.scratchRoot)).to.deep.equal([]);
  });

  it('destroy_kernel of a kernel whose create is under way destroys it once made', async () => {
    const { client, agent, agentId } = await startAgent();
    const id = uniqueName('k');
    const create = client.callWithTimeout(60_000, methods.create_kernel, id, config);
    await eventually('the create to be under way', () => agent.kernelService!.stateCounts().creating === 1, 30_000, 5);
    await client.callWithTimeout(60_000, methods.destroy_kernel, id);
    await create.catch(() => undefined); // made and then destroyed, or refused: either way nothing may be left
    expect(await containersOf(agentId)).to.have.length(0);
    expect(await kernelIds(client)).to.deep.equal([]);
    expect(await coresHeld(client)).to.equal(0);
  });
});
