/**
 * Output kept across agent restarts (issue 28, item 2) and early input (item
 * 7): runs that end while no agent listens, the one going and the one queued
 * behind it, give the restarted agent exactly the rest of what they printed
 * and their real ends; input sent before a run asks for it is its answer.
 * Against the real image's runner through a real agent.
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { type RunResult } from '../../src/rpc/results.js';
import { AgentClient } from '../../src/rpc/client.js';
import { eventually, requireEtcd, spawnAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { spawnedKernel } from '../helpers/spawned-kernel.js';
import { consoleText } from '../helpers/run.js';

const config = () => ({ lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 256 }, mounts: [], environ: {} });

/** Calls `continue` on a run until it ends; every reply, in order. */
async function drive(client: AgentClient, id: string, runId: string, first?: RunResult): Promise<RunResult[]> {
  const replies: RunResult[] = first ? [first] : [];
  const deadline = Date.now() + 60_000;
  while (replies.length === 0 || ['continued', 'build-finished', 'waiting-input'].includes(replies.at(-1)!.status)) {
    if (Date.now() > deadline) throw new Error(`run ${runId} did not finish: ${JSON.stringify(replies.map((r) => [r.status, r.console]))}`);
    replies.push(await client.callWithTimeout(30_000, methods.execute, 2, id, runId, 'continue', '', {}, 1));
  }
  return replies;
}

describe('kept output (issue 28)', function () {
  this.timeout(180_000);
  before(requireEtcd);

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`runs that end while no agent listens (${signal}): the restarted agent gives each, the queued one too, exactly its rest and its end`, async () => {
      const { args, first, client, id, scratch } = await spawnedKernel(config());
      // The run prints ticks 0-4, waits for the test's go-ahead (a file in its home), prints ticks 5-19 and `done`.
      const ticks =
        'import os, time\nfor i in range(5): print("tick", i, flush=True)\n' +
        'while not os.path.exists("/home/work/go"): time.sleep(0.05)\n' +
        'for i in range(5, 20): print("tick", i); time.sleep(0.02)\nprint("done")';
      const queued = 'import os\nfor i in range(10): print("queued", i)\nopen("/home/work/queued-done", "w").close()';
      const seen = [await client.callWithTimeout(30_000, methods.execute, 2, id, 'ticks', 'query', ticks, {}, 1)];
      while (!consoleText(seen, 'stdout').includes('tick 4'))
        seen.push(await client.callWithTimeout(30_000, methods.execute, 2, id, 'ticks', 'continue', '', {}, 1));
      const queuedFirst = await client.callWithTimeout(30_000, methods.execute, 2, id, 'queued', 'query', queued, {}, 1);
      expect(queuedFirst.status).to.equal('continued');
      first.child.kill(signal);
      await first.exited;
      // Both runs end while no agent listens.
      await fs.writeFile(path.join(scratch, id, 'go'), '');
      await eventually('the queued run to end', () => existsSync(path.join(scratch, id, 'queued-done')), 30_000);
      const second = spawnAgent(args);
      await second.waitFor(/"message":"agent running"/);
      const rest = await drive(client, id, 'ticks');
      expect(rest.at(-1)!.status).to.equal('finished');
      expect(rest.at(-1)!.exitCode).to.equal(0);
      const want = [...Array.from({ length: 20 }, (_, i) => `tick ${i}\n`), 'done\n'].join('');
      expect(consoleText([...seen, ...rest], 'stdout')).to.equal(want);
      const q = await drive(client, id, 'queued');
      expect(q.at(-1)!.status).to.equal('finished');
      expect(q.at(-1)!.exitCode).to.equal(0);
      expect(consoleText([queuedFirst, ...q], 'stdout')).to.equal(Array.from({ length: 10 }, (_, i) => `queued ${i}\n`).join(''));
      expect(consoleText([...seen, ...rest, queuedFirst, ...q], 'stderr')).to.equal('');
    });
  }

  /** An agent of its own and a kernel of it. */
  async function kernel() {
    const { client, id, scratch } = await spawnedKernel(config());
    return { client, id, scratch };
  }

  it('output written just before the runner exits arrives, in order, before the run ends: fds 1 and 2, flushed or not, a subprocess too, also after a signal', async () => {
    const { client, id } = await kernel();
    const cases: Array<[string, number, string, string]> = [
      [
        'import os, sys\nprint("printed")\nsys.stdout.write("unflushed")\nos.write(1, b" raw\\n")\nos.write(2, b"err\\n")\nos._exit(3)',
        3,
        'printed\nunflushed raw\n',
        'err\n',
      ],
      ['import os, subprocess\nsubprocess.run("echo child; echo child-err >&2", shell=True)\nos._exit(4)', 4, 'child\n', 'child-err\n'],
      // A subprocess that writes once the runner is gone (killed by a signal): the next runner reads it for the run.
      [
        'import os, subprocess\nsubprocess.Popen("while kill -0 $PPID 2>/dev/null; do sleep 0.02; done; echo child-after; echo child-after-err >&2", shell=True)\nos.kill(os.getpid(), 9)',
        137,
        'child-after\n',
        'child-after-err\n',
      ],
    ];
    const endLine = (exitCode: number) => (exitCode === 137 ? 'runner died: signal 9' : `runner exited with status ${exitCode}`);
    for (const [code, exitCode, stdout, stderr] of cases) {
      const rid = uniqueName('r');
      const replies = await drive(client, id, rid, await client.callWithTimeout(30_000, methods.execute, 2, id, rid, 'query', code, {}, 1));
      expect(replies.at(-1)!.exitCode, code).to.equal(exitCode);
      expect(consoleText(replies, 'stdout'), code).to.equal(stdout);
      expect(consoleText(replies, 'stderr'), code).to.match(new RegExp(`^${stderr}.*${endLine(exitCode)}`, 's'));
    }
  });

  it('input sent before the run asks for it is kept until it does', async () => {
    const { client, id, scratch } = await kernel();
    const code = 'import os, time\nwhile not os.path.exists("/home/work/go"): time.sleep(0.05)\nprint("got", input())';
    const replies = [await client.callWithTimeout(30_000, methods.execute, 2, id, 'early', 'query', code, {}, 1)];
    expect(replies[0]!.status).to.equal('continued');
    replies.push(await client.callWithTimeout(30_000, methods.execute, 2, id, 'early', 'input', 'early bird', {}, 1));
    await fs.writeFile(path.join(scratch, id, 'go'), '');
    const rest = await drive(client, id, 'early');
    expect(rest.at(-1)!.status).to.equal('finished');
    expect([...replies, ...rest].map((r) => r.status)).to.not.include('waiting-input');
    expect(consoleText([...replies, ...rest], 'stdout')).to.equal('got early bird\n');
  });
});
