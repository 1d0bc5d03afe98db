/**
 * User code in the image's own interpreter (docs/running-code.rst, "User code
 * in the image's Python"): the kernel image's runner with CA_USER_PYTHON runs
 * query-mode code in a child process of that Python (user_repl.py), and with
 * CA_KERNEL_MODE=shell runs it with the image's shell; spoken to over the
 * runner's ports, without an agent.
 */
import { expect } from 'chai';
import Docker from 'dockerode';
import { methods } from '../../src/rpc/methods.js';
import { removeImageAfterTest } from '../helpers/derived-image.js';
import { eventually, requireEtcd, startAgent, TEST_IMAGE_LANG, TEST_IMAGE_PREFIX, uniqueName } from '../helpers/env.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { json, type Kernel, startKernel, text } from '../helpers/runner-kernel.js';

// The runner runs as /usr/bin/python3 (the entrypoint); user code must run in the interpreter named here.
const USER_PYTHON = ['CA_USER_PYTHON=/usr/bin/python3.11'];

const docker = new Docker();

/** The test kernel image with CA_USER_PYTHON in its own environment (a `docker commit`), removed after the test; its lang. */
async function userPythonImage(): Promise<string> {
  const tag = uniqueName('user-python').toLowerCase();
  const base = `${TEST_IMAGE_PREFIX}${TEST_IMAGE_LANG}`;
  const c = await docker.createContainer({ Image: base, Cmd: ['true'], Labels: { 'io.compute-agent.test': tag } });
  try {
    const info = await docker.getImage(base).inspect();
    await c.commit({
      repo: 'lablup/kernel-python',
      tag,
      changes: [`ENV ${USER_PYTHON[0]}`, `ENTRYPOINT ${JSON.stringify(info.Config.Entrypoint)}`, `CMD ${JSON.stringify(info.Config.Cmd)}`],
    });
  } finally {
    await c.remove({ force: true });
  }
  removeImageAfterTest(`lablup/kernel-python:${tag}`);
  return `python:${tag}`;
}

/** The runner's generation (its `hello`): it changes only when the runner itself restarts. */
async function generation(k: Kernel): Promise<string> {
  k.mark();
  await k.send('hello');
  return json(await k.next('hello')).generation as string;
}

describe("user code in the image's interpreter", function () {
  this.timeout(60_000);

  it('runs code in a child of the named Python: state across runs, output in order, exceptions, input, completions, interrupt', async () => {
    const k = await startKernel({ env: USER_PYTHON });
    // the runner (its parent) has imported zmq; the child has not
    const who = await k.run(
      'code',
      'import os, sys\nprint(sys.executable, "zmq" in sys.modules, b"runner.py" in open("/proc/%d/cmdline" % os.getppid(), "rb").read())',
    );
    expect(who).to.include({ stdout: '/usr/bin/python3.11 False True\n', exitCode: 0 });
    expect(await k.run('code', 'x = 41\ndef f(a):\n    return a + 1')).to.include({ exitCode: 0 });
    expect(await k.run('code', 'print(f(x))')).to.include({ stdout: '42\n', exitCode: 0 });

    // print, sys.stdout.buffer, os.write and a subprocess: each stream in the order written
    const mixed = await k.run(
      'code',
      'import sys, os\nfor i in range(3):\n    print("out", i)\n    print("err", i, file=sys.stderr)\n    os.write(1, b"raw %d\\n" % i)\nos.system("echo from-shell; echo to-err >&2")\nsys.stdout.buffer.write(b"buffer\\n")\nprint("end")',
    );
    expect(mixed.stdout).to.equal('out 0\nraw 0\nout 1\nraw 1\nout 2\nraw 2\nfrom-shell\nbuffer\nend\n');
    expect(mixed.stderr).to.equal('err 0\nerr 1\nerr 2\nto-err\n');

    // streamed while the code runs, not at its end
    const slow = await k.run('code', 'import time\nfor i in range(4):\n    print(i)\n    time.sleep(0.3)');
    const outs = slow.records.filter((r) => r.type === 'stdout');
    expect(slow.stdout).to.equal('0\n1\n2\n3\n');
    expect(slow.finishedAt - outs[0]!.at).to.be.at.least(600);

    const err = await k.run('code', 'print("before")\n1/0');
    expect(err).to.include({ stdout: 'before\n', exitCode: 1 });
    expect(err.stderr).to.include('Traceback').and.include('ZeroDivisionError').and.not.include('user_repl.py');
    expect((await k.run('code', 'def (')).stderr).to.include('SyntaxError');
    expect(await k.run('code', 'import sys\nsys.exit(4)')).to.include({ exitCode: 4 });

    k.mark();
    await k.send(
      'code',
      'name = input("name? ")\nprint("hello", name)\nimport getpass\npw = getpass.getpass()\nprint(len(pw), sys.stdin.readline())',
    );
    expect(json(await k.next('waiting-input'))).to.deep.equal({ is_password: false });
    expect(text(k.recent, 'stdout')).to.equal('name? ');
    k.mark();
    await k.send('input', 'bob');
    expect(json(await k.next('waiting-input'))).to.deep.equal({ is_password: true });
    const head = text(k.recent, 'stdout');
    k.mark();
    await k.send('input', 'secret');
    await k.waitFor('the readline', () => k.recent.filter((r) => r.type === 'waiting-input').length === 1);
    k.mark();
    await k.send('input', 'line');
    const asked = await k.result();
    expect(head + asked.stdout).to.equal('hello bob\nPassword: 6 line\n\n');

    await k.run('code', 'my_variable = 1');
    k.mark();
    await k.send('complete', JSON.stringify({ code: 'x = my_v' }));
    expect(json(await k.next('completion'))).to.deep.equal(['my_variable']);
    k.mark();
    await k.send('complete', JSON.stringify({ code: 'pri' }));
    expect(json(await k.next('completion'))).to.include('print');

    // an interrupt raises KeyboardInterrupt in the code, also while it waits for input; the REPL lives on
    const gen = await generation(k);
    for (const code of ['print("in", flush=True)\nwhile True: pass', 'import time\nprint("in")\ntime.sleep(100)', 'print("in")\ninput()']) {
      k.mark();
      await k.send('code', code);
      await k.waitFor('the job to run', () => text(k.recent, 'stdout').includes('in\n'));
      await k.send('interrupt');
      const r = await k.result(10_000);
      expect(r.exitCode).to.equal(1);
      expect(r.stderr).to.include('KeyboardInterrupt').and.not.include('user_repl.py');
    }
    expect(await k.run('code', 'print(f(x))')).to.include({ stdout: '42\n', exitCode: 0 });
    expect(await generation(k)).to.equal(gen);
  });

  it('a child that dies ends its run with its output and status; the next run gets a fresh one, the runner lives on', async () => {
    const k = await startKernel({ env: USER_PYTHON });
    const gen = await generation(k);
    await k.run('code', 'kept = 1');
    const exit = await k.run(
      'code',
      'import os, sys\nprint("unflushed", end="")\nsys.stderr.write("err")\nos.write(1, b"-raw")\nos._exit(3)',
    );
    expect(exit.exitCode).to.equal(3);
    expect(exit.stdout).to.equal('unflushed-raw');
    expect(exit.stderr).to.match(
      /^err\[the Python process of user code exited with status 3; .*was lost: the next run starts a fresh one\]\n$/,
    );
    const fresh = await k.run('code', 'print("kept" in globals())');
    expect(fresh).to.include({ stdout: 'False\n', exitCode: 0 });

    const segv = await k.run('code', 'import ctypes\nprint("before")\nctypes.string_at(0)');
    expect(segv).to.include({ stdout: 'before\n', exitCode: 139 });
    expect(segv.stderr).to.include('died: signal 11 (SIGSEGV)');
    // killing its whole process group kills the child, not the runner
    const group = await k.run('code', 'import os\nos.killpg(0, 9)');
    expect(group.exitCode).to.equal(137);
    expect(await k.run('code', 'print("again")')).to.include({ stdout: 'again\n', exitCode: 0 });
    // one that ignores SIGINT is killed at the third interrupt of its run
    k.mark();
    await k.send('code', 'import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint("in")\ntime.sleep(100)');
    await k.waitFor('the job to run', () => text(k.recent, 'stdout').includes('in\n'));
    for (let i = 0; i < 3; i++) await k.send('interrupt');
    expect((await k.result(10_000)).exitCode).to.equal(137);
    // a child that dies between runs: the next run says its state was lost
    await k.run('code', 'import os, threading, time\nthreading.Thread(target=lambda: (time.sleep(0.3), os._exit(0))).start()');
    await eventually(
      'the child to exit after its run',
      async () => !(await k.container.top()).Processes.some((p: string[]) => p.join(' ').includes('user_repl.py')),
    );
    const after = await k.run('code', 'print("next")');
    expect(after).to.include({ stdout: 'next\n', exitCode: 0 });
    expect(after.stderr).to.include('exited with status 0 after the last run');
    expect(await generation(k)).to.equal(gen);
  });

  it('CA_KERNEL_MODE=shell runs code, batch and the terminal with CA_USER_SHELL', async () => {
    const k = await startKernel({ env: ['CA_KERNEL_MODE=shell', 'CA_USER_SHELL=/bin/sh'], shell: true });
    const q = await k.run('code', 'echo "$0 in $(pwd)"; echo oops >&2; exit 3');
    expect(q).to.include({ stdout: '/bin/sh in /home/work\n', stderr: 'oops\n', exitCode: 3 });
    k.mark();
    await k.send('build', 'echo "build $0"');
    await k.send('exec', 'echo "exec $0"');
    const b = await k.result();
    expect(b).to.include({ stdout: 'build /bin/sh\nexec /bin/sh\n', exitCode: 0 });
    expect(await k.run('exec', '*')).to.include({ exitCode: 127 });
    k.mark();
    await k.send('complete', JSON.stringify({ code: 'ec' }));
    expect(json(await k.next('completion'))).to.deep.equal([]);
    k.mark();
    await k.send('code', 'echo in; sleep 100');
    await k.waitFor('the command to run', () => text(k.recent, 'stdout').includes('in\n'));
    await k.send('interrupt');
    expect((await k.result(10_000)).exitCode).to.equal(130);
    // dash has no $BASH_VERSION: the terminal runs the named shell, not bash
    await k.typeUntil('echo "shell=$0 bash=${BASH_VERSION:-none}"\n', /shell=\/bin\/sh bash=none/);
  });

  it('through the agent: a kernel of such an image runs code in the named Python, and restart_kernel gives it a fresh REPL', async () => {
    await requireEtcd();
    const lang = await userPythonImage();
    const { client } = await startAgent();
    const id = uniqueName('k');
    const config = { lang, limits: { cpu_slot: 1, mem_slot: 256 }, mounts: [], environ: {} };
    await client.callWithTimeout(60_000, methods.create_kernel, id, config);
    const first = await runToEnd(client, id, 'import sys\nkept = 1\nprint(sys.executable, "zmq" in sys.modules)');
    expect(consoleText(first, 'stdout')).to.equal('/usr/bin/python3.11 False\n');
    expect(consoleText(await runToEnd(client, id, 'print(kept)'), 'stdout')).to.equal('1\n');
    await client.callWithTimeout(60_000, methods.restart_kernel, id, config);
    expect(consoleText(await runToEnd(client, id, 'print("kept" in globals(), sys.executable)'), 'stderr')).to.include(
      "NameError: name 'sys'",
    );
    expect(consoleText(await runToEnd(client, id, 'import sys\nprint("kept" in globals(), sys.executable)'), 'stdout')).to.equal(
      'False /usr/bin/python3.11\n',
    );
  });
});
