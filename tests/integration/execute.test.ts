/**
 * execute through the agent's relay to the real kernel runner: every mode,
 * api versions 1 and 2, continued runs, input, batch builds, interrupt, exec
 * timeout, big output and completions.
 */
import { expect } from 'chai';
import { RemoteError } from '../../src/errors.js';
import { methods } from '../../src/rpc/methods.js';
import { requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { sink } from '../helpers/sink.js';
import { waitRealTime } from '../helpers/real-time.js';

const config = { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 512 }, mounts: [], environ: {} };

async function kernel(overrides: Parameters<typeof startAgent>[1] = undefined) {
  const t = await startAgent({}, overrides);
  const id = uniqueName('k');
  await t.client.callWithTimeout(60_000, methods.create_kernel, id, config);
  // The runner binds its ports a moment after the container starts; ZeroMQ holds the request until then.
  expect(consoleText(await runToEnd(t.client, id, '%ping'), 'stdout')).to.equal('pong!\n');
  return { ...t, id };
}

describe('execute through the relay', function () {
  this.timeout(60_000);
  before(requireEtcd);

  it('runs query code with api 2 and api 1 shapes, keeps state, and reports exceptions', async () => {
    const { client, id } = await kernel();
    const two = await runToEnd(client, id, 'print(1+1)');
    expect(two.at(-1)).to.include({ status: 'finished', exitCode: 0 });
    expect(two.flatMap((r) => r.console)).to.deep.equal([['stdout', '2\n']]);
    const one = await runToEnd(client, id, 'x = 41\nprint(x+1)', { api: 1 });
    expect(one.map((r) => r.stdout).join('')).to.equal('42\n');
    expect(one.at(-1)).to.include({ status: 'finished' });
    expect(consoleText(await runToEnd(client, id, 'print(x)'), 'stdout')).to.equal('41\n');
    const err = await runToEnd(client, id, '1/0');
    expect(consoleText(err, 'stderr')).to.match(/Traceback[\s\S]*ZeroDivisionError/);
    expect(err.at(-1)!.exitCode).to.not.equal(0);
  });

  it('lists the files a finished run wrote under .output', async () => {
    const { client, id } = await kernel();
    const wrote = await runToEnd(
      client,
      id,
      'import os\nos.makedirs("/home/work/.output/sub", exist_ok=True)\nopen("/home/work/.output/a.txt", "w").write("12345")\nopen("/home/work/.output/sub/b.bin", "wb").write(b"x")',
    );
    expect(wrote.at(-1)!.files).to.deep.equal([
      { name: 'a.txt', size: 5 },
      { name: 'sub/b.bin', size: 1 },
    ]);
    await waitRealTime(
      20,
      'the next run starts past the 5 ms the file listing allows the file system clock, so these files are older than it',
    );
    const untouched = await runToEnd(client, id, 'print("no files")');
    expect(untouched.at(-1)!.files).to.deep.equal([]);
  });

  it('returns continued after the flush timeout and the rest through continue, nothing lost or doubled', async () => {
    const { client, id } = await kernel();
    const replies = await runToEnd(client, id, 'import time\nfor i in range(8):\n    print(i)\n    time.sleep(0.25)', { flush: 0.5 });
    expect(replies[0]!.status).to.equal('continued');
    expect(replies.at(-1)!.status).to.equal('finished');
    expect(consoleText(replies, 'stdout')).to.equal('0\n1\n2\n3\n4\n5\n6\n7\n');
  });

  it('asks for input and resumes with it', async () => {
    const { client, id } = await kernel();
    let r = await client.call(methods.execute, 2, id, null, 'query', 'name = input("who? ")\nprint("hi " + name)', {});
    while (r.status === 'continued') r = await client.call(methods.execute, 2, id, r.runId, 'continue', '', {});
    expect(r.status).to.equal('waiting-input');
    expect(r.options).to.deep.include({ is_password: false });
    const rest = [await client.call(methods.execute, 2, id, r.runId, 'input', 'bob', {})];
    while (rest.at(-1)!.status === 'continued') rest.push(await client.call(methods.execute, 2, id, r.runId, 'continue', '', {}));
    expect(consoleText(rest, 'stdout')).to.contain('hi bob');
  });

  it('runs batch mode: a failing build skips exec with 127, a good one runs it', async () => {
    const { client, id } = await kernel();
    const bad = [await client.call(methods.execute, 2, id, 'b1', 'batch', '', { build: 'exit 3', exec: 'echo never' })];
    while (bad.at(-1)!.status !== 'finished') bad.push(await client.call(methods.execute, 2, id, 'b1', 'continue', '', {}));
    expect(bad.map((r) => r.status)).to.include('build-finished');
    expect(bad.at(-1)!.exitCode).to.equal(127);
    expect(consoleText(bad, 'stdout')).to.not.contain('never');
    const good = [await client.call(methods.execute, 2, id, 'b2', 'batch', '', { build: 'echo built', exec: 'echo ran' })];
    while (good.at(-1)!.status !== 'finished') good.push(await client.call(methods.execute, 2, id, 'b2', 'continue', '', {}));
    expect(good.at(-1)!.exitCode).to.equal(0);
    expect(consoleText(good, 'stdout')).to.equal('built\nran\n');
  });

  it("runs batch `*` as the 2018 client sends it (the runner's defaults: python main.py, else 127) and empty commands, each answered", async () => {
    const { client, id } = await kernel();
    const batch = async (build: string, exec: string) => {
      const rs = [await client.call(methods.execute, 2, id, null, 'batch', '', { build, exec })];
      while (rs.at(-1)!.status !== 'finished') rs.push(await client.call(methods.execute, 2, id, rs[0]!.runId, 'continue', '', {}));
      return rs;
    };
    const none = await batch('*', '*');
    expect([none.at(-1)!.exitCode, consoleText(none, 'stderr')]).to.deep.equal([127, 'cannot find the main script (main.py)\n']);
    await runToEnd(client, id, 'open("main.py", "w").write("import sys; print(sys.version_info[0])")');
    const main = await batch('*', '*');
    expect([consoleText(main, 'stdout'), main.at(-1)!.exitCode]).to.deep.equal(['3\n', 0]);
    const buildOnly = await batch('echo built', '');
    expect([consoleText(buildOnly, 'stdout'), buildOnly.at(-1)!.exitCode]).to.deep.equal(['built\n', 0]);
    expect(consoleText(await runToEnd(client, id, 'print("next")'), 'stdout')).to.equal('next\n'); // nothing left over
  });

  it('interrupts a busy loop, and completes names', async () => {
    const { client, id } = await kernel();
    // The interrupt goes once the loop runs: the runner drops one that comes before the run starts (a loaded machine may take that long).
    const first = await client.call(methods.execute, 2, id, null, 'query', 'print("spinning", flush=True)\nwhile True: pass', {}, 0.3);
    const runId = first.runId;
    const seen = [first];
    while (!consoleText(seen, 'stdout').includes('spinning') && seen.length < 200)
      seen.push(await client.call(methods.execute, 2, id, runId, 'continue', '', {}, 0.3));
    expect(seen.at(-1)!.status).to.equal('continued');
    await client.call(methods.interrupt_kernel, id);
    let end = await client.call(methods.execute, 2, id, runId, 'continue', '', {});
    while (end.status === 'continued') end = await client.call(methods.execute, 2, id, runId, 'continue', '', {});
    expect(end.status).to.equal('finished');
    expect(end.exitCode).to.not.equal(0);
    const gone = await client.call(methods.execute, 2, id, runId, 'continue', '', {}).catch((e: unknown) => e);
    expect(gone instanceof RemoteError && gone.remoteType).to.equal('agent.RunNotFound');
    const c = await client.call(methods.get_completions, id, 'pri', {});
    expect(c.completions.some((x) => x.startsWith('print'))).to.equal(true);
    expect(await client.callRaw('get_completions', [id, 'query', 'pri', {}])).to.deep.equal(c); // the 2018 form
  });

  it('keeps a multi-byte character whole when the kernel writes it in two pieces', async () => {
    const { client, id } = await kernel();
    const replies = await runToEnd(client, id, 'import os, time\nos.write(1, b"\\xe2")\ntime.sleep(0.3)\nos.write(1, b"\\x98\\x83\\n")');
    expect(consoleText(replies, 'stdout')).to.equal('\u2603\n');
  });

  it('answers a waiting call as soon as its run holds the 16 MiB it may, not at the flush timeout', async () => {
    const { client, id } = await kernel();
    const line = 'x'.repeat(1024 * 1024 - 1);
    // flush timeout 600 s, each call given 30 s: only the early answer of a full run lets this finish
    const replies = await runToEnd(client, id, `import sys\nfor _ in range(40):\n    sys.stdout.write("x" * ${line.length} + "\\n")`, {
      flush: 600,
      timeoutMs: 30_000,
    });
    expect(replies[0]!.status).to.equal('continued');
    expect(consoleText([replies[0]!], 'stdout').length).to.be.at.least(16 * 1024 * 1024);
    expect(replies.at(-1)!.status).to.equal('finished');
    expect(consoleText(replies, 'stdout')).to.equal(`${line}\n`.repeat(40));
  });

  it('truncates a 20 MiB record instead of failing', async () => {
    const { client, id } = await kernel();
    const replies = await runToEnd(
      client,
      id,
      'import sys\nsys.stdout.write("x" * (20 * 1024 * 1024))\nsys.stdout.flush()\nprint()\nprint("after")',
    );
    const out = consoleText(replies, 'stdout');
    expect(out).to.contain('after');
    expect(out.length).to.be.below(21 * 1024 * 1024);
    expect(replies.at(-1)!.status).to.equal('finished');
  });

  it('destroys the kernel with exec-timeout when a run takes too long', async () => {
    const s = await sink();
    const { client, id } = await kernel(async (ns) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
      await ns.put('config/agent/exec_timeout').value('2');
    });
    const replies = await runToEnd(client, id, 'import time\ntime.sleep(30)', { flush: 1 });
    expect(replies.at(-1)!.status).to.equal('exec-timeout');
    const term = await s.next('kernel_terminated', 0, 10_000);
    expect(term.args.slice(0, 2)).to.deep.equal([id, 'exec-timeout']);
  });
});
