/**
 * Per-kernel preparation against the real Docker and kernel image: a
 * bootstrap_script runs as the kernel user before the runner (its output in
 * get_logs, its files there for the code), a failing one rolls the kernel
 * back with the exit code and last lines, and the workspace_template is
 * copied into the home with the kernel user as owner and symlinks as links.
 */
import { promises as fs, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { onCleanup, remoteError, requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { expectNothingLeft } from '../helpers/leftovers.js';

const config = (extra: Record<string, unknown> = {}) => ({
  lang: TEST_IMAGE_LANG,
  limits: { cpu_slot: 1, mem_slot: 256 },
  mounts: [],
  environ: {},
  ...extra,
});

async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'template-'));
  onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

describe('per-kernel preparation: bootstrap_script', function () {
  this.timeout(60_000);
  before(requireEtcd);

  it('runs as the kernel user before the runner; the code reads what it wrote, get_logs shows its output', async () => {
    const a = await startAgent();
    const id = uniqueName('k');
    await a.client.callWithTimeout(
      30_000,
      methods.create_kernel,
      id,
      config({ bootstrap_script: 'echo "bootstrap says hi"\nid -u > /home/work/made-by-bootstrap\n' }),
    );
    const out = consoleText(await runToEnd(a.client, id, 'print(open("/home/work/made-by-bootstrap").read().strip())'), 'stdout');
    expect(out).to.equal('1000\n');
    const { logs } = await a.client.call(methods.get_logs, id);
    expect(logs).to.include('bootstrap says hi');
    expect(logs.indexOf('bootstrap says hi')).to.be.lessThan(logs.indexOf('starting runner'));
    expect((await fs.stat(path.join(a.agent.options.scratchRoot, id, 'made-by-bootstrap'))).uid).to.equal(1000);
  });

  it('a failing script fails create_kernel with its exit code and last lines, and rolls everything back', async () => {
    const a = await startAgent();
    const err = await remoteError(
      a.client.callWithTimeout(
        30_000,
        methods.create_kernel,
        uniqueName('k'),
        config({ bootstrap_script: 'echo "step one"\necho "it broke" >&2\nexit 7\n' }),
      ),
    );
    expect(err.remoteType).to.equal('agent.KernelCreationFailed');
    expect(err.remoteMessage).to.include('exit code 7').and.include('step one').and.include('it broke');
    await expectNothingLeft(a);
  });

  it('refuses a script that is too large or not a str, as a ParametersError', async () => {
    const a = await startAgent();
    for (const bootstrap_script of ['x'.repeat(64 * 1024 + 1), 42]) {
      const e = await remoteError(a.client.call(methods.create_kernel, uniqueName('k'), config({ bootstrap_script })));
      expect(e.remoteType).to.equal('aiozmq.rpc.base.ParametersError');
      expect(e.remoteMessage).to.include('bootstrap_script');
    }
    await expectNothingLeft(a);
  });
});

describe('per-kernel preparation: workspace_template', function () {
  this.timeout(60_000);
  before(requireEtcd);

  it('copies the template into the home owned by the kernel user, a symlink to /etc as a link', async () => {
    const tpl = await tempDir();
    await fs.mkdir(path.join(tpl, 'sub'));
    await fs.writeFile(path.join(tpl, 'sub', 'hello.txt'), 'from the template\n');
    await fs.symlink('/etc', path.join(tpl, 'etc-link'));
    const a = await startAgent({}, async (ns) => {
      await ns.put('config/agent/workspace_template').value(tpl);
    });
    const id = uniqueName('k');
    await a.client.callWithTimeout(30_000, methods.create_kernel, id, config());
    const home = path.join(a.agent.options.scratchRoot, id);
    expect(await fs.readFile(path.join(home, 'sub', 'hello.txt'), 'utf8')).to.equal('from the template\n');
    for (const p of ['sub', 'sub/hello.txt']) expect((await fs.stat(path.join(home, p))).uid, p).to.equal(1000);
    const link = await fs.lstat(path.join(home, 'etc-link'));
    expect(link.isSymbolicLink()).to.equal(true);
    expect(link.uid).to.equal(1000);
    expect(await fs.readlink(path.join(home, 'etc-link'))).to.equal('/etc');
    expect(readdirSync(home)).to.not.include('passwd'); // the target was not copied
    const out = consoleText(
      await runToEnd(a.client, id, 'import os; print(os.path.islink("etc-link"), open("sub/hello.txt").read().strip())'),
      'stdout',
    );
    expect(out).to.equal('True from the template\n');
  });

  it('a template that breaks a rule (a FIFO, past the size bound) stops the create with a clear error and leaves nothing', async () => {
    const tpl = await tempDir();
    await fs.writeFile(path.join(tpl, 'big.bin'), Buffer.alloc(4096));
    const a = await startAgent({}, async (ns) => {
      await ns.put('config/agent/workspace_template').value(tpl);
      await ns.put('config/agent/workspace_template_max_bytes').value('1000');
    });
    const big = await remoteError(a.client.call(methods.create_kernel, uniqueName('k'), config()));
    expect(big.remoteType).to.equal('agent.KernelCreationFailed');
    expect(big.remoteMessage).to.include('larger than workspace_template_max_bytes (1000 bytes)');
    await expectNothingLeft(a);
    await fs.rm(path.join(tpl, 'big.bin'));
    execFileSync('mkfifo', [path.join(tpl, 'pipe')]);
    const fifo = await remoteError(a.client.call(methods.create_kernel, uniqueName('k'), config()));
    expect(fifo.remoteMessage).to.include('entry pipe is not a file, folder or symlink');
    await expectNothingLeft(a);
  });
});
