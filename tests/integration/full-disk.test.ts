/**
 * A full disk does not break the agent, against the real Docker engine: the
 * scratch root is a small loop-mounted file system made by the test; once
 * its free space is under scratch_reserve new kernels are refused with the
 * free space named (retryable), an upload that does not fit is agent.NoSpace
 * and leaves nothing behind, the agent's own atomic writes fail whole, and
 * the running kernel and the agent go on; inodes are checked like bytes.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { remoteError, requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { smallFs } from '../helpers/small-fs.js';
import { writeFileAtomic } from '../../src/util/atomic-write.js';
import { homesIn } from '../helpers/leftovers.js';

const MiB = 1024 * 1024;
const config = { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 128 }, mounts: [], environ: {} };

describe('a full scratch disk', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('refuses new kernels under scratch_reserve, fails an upload that does not fit with agent.NoSpace, and keeps the rest running', async () => {
    const scratchRoot = await smallFs(32);
    const { client } = await startAgent({ scratchRoot }, (ns) =>
      ns
        .put('config/agent/scratch_reserve')
        .value('12')
        .then(() => undefined),
    );
    const id = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, id, config);
    await client.call(methods.upload_file, id, 'fill.bin', Buffer.alloc(20 * MiB, 1)); // the root now has under 12 MiB free

    const refused = await remoteError(client.callWithTimeout(60_000, methods.create_kernel, uniqueName('k'), config));
    expect(refused.remoteType).to.equal('agent.InsufficientResources');
    expect(refused.retryable).to.equal(true);
    expect(String(refused.remoteArgs[0])).to.match(/has \d+ MiB free, less than scratch_reserve \(12 MiB\)/);
    expect(homesIn(scratchRoot)).to.deep.equal([id]); // the refusal took nothing

    const full = await remoteError(client.call(methods.upload_file, id, 'more.bin', Buffer.alloc(20 * MiB, 2)));
    expect(full.remoteType).to.equal('agent.NoSpace');
    expect(String(full.remoteArgs[0])).to.match(/home is full/);
    expect((await fs.readdir(path.join(scratchRoot, id))).filter((n) => n.startsWith('.upload-'))).to.deep.equal([]); // no half-written file

    // the kernel and the agent go on; freeing space lets creates in again
    expect(consoleText(await runToEnd(client, id, 'print(open("fill.bin", "rb").read(3))'), 'stdout')).to.equal("b'\\x01\\x01\\x01'\n");
    expect(await client.call(methods.ping, 'still here')).to.equal('still here');
    // the agent's own writes (claim records, environ.txt, the metrics file) never leave half a file
    const own = path.join(scratchRoot, 'agent-file');
    await writeFileAtomic(own, 'old');
    const err = await writeFileAtomic(own, Buffer.alloc(20 * MiB, 3)).then(
      () => null,
      (e: NodeJS.ErrnoException) => e,
    );
    expect(err?.code).to.equal('ENOSPC');
    expect(await fs.readFile(own, 'utf8')).to.equal('old');
    expect((await fs.readdir(scratchRoot)).filter((n) => n.endsWith('.tmp'))).to.deep.equal([]);
    await fs.rm(own);
    await client.call(methods.upload_file, id, 'fill.bin', Buffer.from('small now'));
    const second = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, second, config);
    await client.call(methods.destroy_kernel, second);
    await client.call(methods.destroy_kernel, id);
  });

  it('refuses new kernels retryably, naming the inodes, while the scratch root has too few inodes free; lets them in once files are removed', async () => {
    const scratchRoot = await smallFs(32, 128);
    const { client } = await startAgent({ scratchRoot }, (ns) =>
      ns
        .put('config/agent/scratch_reserve')
        .value('1') // keeps back 1/32 of the bytes, so 1/32 of the inodes too
        .then(() => undefined),
    );
    // another writer on the root takes every inode left (bytes stay free)
    const fill = path.join(scratchRoot, 'fill');
    await fs.mkdir(fill);
    let n = 0;
    for (; n < 10_000; n++) {
      const err = await fs.writeFile(path.join(fill, String(n)), '').then(
        () => null,
        (e: NodeJS.ErrnoException) => e,
      );
      if (err?.code === 'ENOSPC') break;
      if (err) throw err;
    }
    expect((await fs.statfs(scratchRoot)).ffree).to.equal(0);
    const before = (await fs.readdir(scratchRoot)).sort();
    const refused = await remoteError(client.callWithTimeout(60_000, methods.create_kernel, uniqueName('k'), config));
    expect(refused.remoteType).to.equal('agent.InsufficientResources');
    expect(refused.retryable).to.equal(true);
    expect(String(refused.remoteArgs[0])).to.match(
      /has 0 free inodes, fewer than a hostdir home takes \(16\) and scratch_reserve keeps back \(\d+,/,
    );
    expect((await fs.readdir(scratchRoot)).sort()).to.deep.equal(before); // the refusal made nothing

    await fs.rm(fill, { recursive: true });
    const id = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, id, config);
    await client.call(methods.destroy_kernel, id);
  });
});
