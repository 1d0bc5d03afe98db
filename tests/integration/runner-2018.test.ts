/**
 * A kernel image of the 2018 kind through the agent (issue 29): an
 * entrypoint that creates its user with useradd and chowns the home, as the
 * 2018 Backend.AI images did (tests/fixtures/runners/entrypoint-2018.sh), and
 * a runner that keeps only section 4 (never says hello, status
 * `{started_at}` only, batch `*` its own default). The kernel is created (the
 * agent waits for `status`), its entrypoint sets its user up with the default
 * capabilities, and user code still runs with none and no new privileges.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { methods } from '../../src/rpc/methods.js';
import { onCleanup, REPO_ROOT, requireEtcd, startAgent, TEST_IMAGE_LANG, TEST_IMAGE_PREFIX, uniqueName } from '../helpers/env.js';
import { removeImageAfterTest } from '../helpers/derived-image.js';
import { consoleText, runToEnd } from '../helpers/run.js';

const docker = new Docker();

/** An image of the test image with the 2018-style entrypoint and a conformance runner of `kind` as its command; removed after the test. */
async function image2018(kind: string): Promise<string> {
  const tag = uniqueName('bai2018');
  const base = await docker.createContainer({
    Image: `${TEST_IMAGE_PREFIX}${TEST_IMAGE_LANG}`,
    Cmd: ['/opt/section4/entrypoint-2018.sh', '/usr/bin/python3', '-u', '/opt/section4/section4_runner.py', kind],
    Labels: { 'io.compute-agent.test': tag },
  });
  try {
    const pack = tar.pack();
    pack.entry({ name: 'section4', type: 'directory', mode: 0o755 });
    for (const [name, mode] of [
      ['entrypoint-2018.sh', 0o755],
      ['section4_runner.py', 0o644],
    ] as const)
      pack.entry({ name: `section4/${name}`, mode }, await fs.readFile(path.join(REPO_ROOT, 'tests/fixtures/runners', name)));
    pack.finalize();
    await base.putArchive(pack as unknown as NodeJS.ReadableStream, { path: '/opt' });
    await base.commit({ repo: 'lablup/kernel-python', tag });
  } finally {
    await base.remove({ force: true });
  }
  removeImageAfterTest(`lablup/kernel-python:${tag}`);
  return `python:${tag}`;
}

describe('a kernel image of the 2018 kind (useradd entrypoint, section 4 runner) through the agent', function () {
  this.timeout(90_000);
  before(requireEtcd);

  it('is created, sets its user up with the default capabilities, runs user code with none, and runs batch `*`', async () => {
    const lang = await image2018('star');
    const { client } = await startAgent();
    const id = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, id, {
      lang,
      limits: { cpu_slot: 1, mem_slot: 256 },
      mounts: [],
      environ: {},
    });
    onCleanup(() => client.call(methods.destroy_kernel, id).then(() => undefined));
    const { logs } = await client.call(methods.get_logs, id);
    expect(logs).to.match(/entrypoint-2018: starting with user id \d+/);
    expect(logs).not.to.contain('failed');

    const probe = [
      'import os, pwd',
      'st = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\\t" in l)',
      'home = os.stat("/home/work")',
      'print(pwd.getpwnam("bai").pw_uid == os.getuid(), home.st_uid == os.getuid(), st["CapEff"].strip(), st["NoNewPrivs"].strip())',
      'open("main.py", "w").write("print(6 * 7)")',
    ].join('\n');
    expect(consoleText(await runToEnd(client, id, probe), 'stdout')).to.equal('True True 0000000000000000 1\n');

    // The 2018 client's file mode: build and exec `*`, the runner's own defaults (no build; python main.py).
    const replies = [await client.call(methods.execute, 2, id, null, 'batch', '', { build: '*', exec: '*' })];
    while (replies.at(-1)!.status !== 'finished')
      replies.push(await client.call(methods.execute, 2, id, replies[0]!.runId, 'continue', '', {}));
    expect([consoleText(replies, 'stdout'), replies.at(-1)!.exitCode]).to.deep.equal(['42\n', 0]);
    expect((await client.callWithTimeout(10_000, methods.get_completions, id, 'pri', {})).completions).to.deep.equal([]);
  });

  it('with only SETUID and SETGID (the earlier default) its useradd and chown fail, which get_logs shows', async () => {
    const lang = await image2018('plain');
    const { client } = await startAgent({}, async (ns) => {
      await ns.put('config/agent/kernel_capabilities').value('SETUID,SETGID');
    });
    const id = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, id, {
      lang,
      limits: { cpu_slot: 1, mem_slot: 256 },
      mounts: [],
      environ: {},
    });
    onCleanup(() => client.call(methods.destroy_kernel, id).then(() => undefined));
    const { logs } = await client.call(methods.get_logs, id);
    expect(logs).to.contain('entrypoint-2018: useradd failed').and.contain('entrypoint-2018: chown failed');
  });
});
