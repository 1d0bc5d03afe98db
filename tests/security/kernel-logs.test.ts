/**
 * A hostile kernel against the log path (kernel -> host: what a kernel
 * container prints lands in Docker's log files under the Docker data root,
 * and get_logs reads it back, docs/kernels.rst "Kernel logs"): a kernel that
 * prints 200 MiB to its container's output leaves at most
 * kernel_log_max_size x kernel_log_max_files on disk, and get_logs answers a
 * bounded tail that says it was cut. Real kernel, real Docker.
 *
 * What user code can reach of the container's output: its fds 1 and 2 are
 * the runner's capture pipes, but the runner's own log descriptor (a dup of
 * the container's stderr, `common._log_fd`) lives in the same process.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import Docker from 'dockerode';
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { LOG_TAIL_BYTES } from '../../src/adapters/docker.js';
import { containersOf, eventually, requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { consoleText, runToEnd } from '../helpers/run.js';

const MiB = 1024 * 1024;
/** What the test sets: 1 MiB x 2 files. */
const MAX_FILES = 2;
/**
 * Docker's json-file driver rotates before a write once a file has reached
 * its size, so a file may pass it by one entry: at most 16 KiB of output
 * (Docker splits longer lines) as JSON with a timestamp, under 40 KiB.
 */
const ENTRY_SLACK = 40 * 1024;

/** 200 MiB in 64 KiB writes to the container's stderr, then a last line. */
const FLOOD = `
import os, sys
fd = sys.modules['common']._log_fd
line = b'x' * 1023 + b'\\n'
chunk = line * 64
total = 0
while total < 200 * 1024 * 1024:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view):]
    total += len(chunk)
os.write(fd, b'flood-end\\n')
print('flooded', total)
`;

describe('security: a kernel that prints without end cannot fill the disk', function () {
  this.timeout(300_000);
  before(requireEtcd);

  it('200 MiB printed leaves at most kernel_log_max_size x kernel_log_max_files on disk; get_logs answers a cut tail', async () => {
    const a = await startAgent({}, async (ns) => {
      await ns.put('config/agent/kernel_log_max_size').value('1');
      await ns.put('config/agent/kernel_log_max_files').value(String(MAX_FILES));
    });
    const id = uniqueName('k-flood');
    await a.client.callWithTimeout(60_000, methods.create_kernel, id, {
      lang: TEST_IMAGE_LANG,
      limits: { cpu_slot: 1, mem_slot: 256 },
      mounts: [],
      environ: {},
    });
    const [c] = (await containersOf(a.agentId)).filter((x) => x.Labels['io.compute-agent.kernel-id'] === id);
    const info = await new Docker().getContainer(c!.Id).inspect();
    expect(info.HostConfig.LogConfig).to.deep.equal({ Type: 'json-file', Config: { 'max-size': String(MiB), 'max-file': '2' } });

    const t0 = Date.now();
    const run = await runToEnd(a.client, id, FLOOD, { timeoutMs: 240_000 });
    expect(consoleText(run, 'stdout')).to.equal(`flooded ${200 * MiB}\n`);
    // Docker copies the container's output to its log after the kernel wrote it: the last line arrives a moment later.
    const logs = (await eventually<string | null>(
      'the last line of the flood in get_logs',
      async () => {
        const answer = (await a.client.callWithTimeout(30_000, methods.get_logs, id)).logs;
        return answer.trimEnd().endsWith('flood-end') ? answer : null;
      },
      60_000,
      200,
    ))!;
    const floodSec = (Date.now() - t0) / 1000;

    // Every file of the container's log: the one written (LogPath) and the rotated ones beside it (.1, ...).
    const base = path.basename(info.LogPath);
    const dir = path.dirname(info.LogPath);
    const files = (await fs.readdir(dir)).filter((f) => f === base || f.startsWith(`${base}.`));
    const sizes = await Promise.all(files.map(async (f) => (await fs.stat(path.join(dir, f))).size));
    const onDisk = sizes.reduce((x, y) => x + y, 0);
    expect(files.length, files.join(', ')).to.be.within(1, MAX_FILES);
    expect(onDisk, `bytes of ${files.join(', ')} (${sizes.join(', ')}); the flood took ${floodSec} s`).to.be.at.most(
      MAX_FILES * (MiB + ENTRY_SLACK),
    );
    expect(onDisk, 'the log was written to the end (rotation, not a stopped log)').to.be.at.least(MiB);

    // get_logs: the end of the output, at most LOG_TAIL_BYTES of it, after a line that says it was cut.
    const [first, ...rest] = logs.split('\n');
    expect(first).to.match(
      /^\[agent\] earlier output is cut \(\d+ bytes of it left out here\): .*kernel_log_max_size x kernel_log_max_files/,
    );
    expect(Buffer.byteLength(rest.join('\n'))).to.be.at.most(LOG_TAIL_BYTES);
    expect(rest[0], 'the tail starts at a whole line').to.match(/^(x{1023}|runner: .*)$/);

    // The kernel and the agent go on.
    const after = await runToEnd(a.client, id, 'print(6 * 7)');
    expect(consoleText(after, 'stdout')).to.equal('42\n');
    console.log(`      (200 MiB printed in ${floodSec} s; ${onDisk} bytes on disk in ${files.length} file(s))`);
  });
});
