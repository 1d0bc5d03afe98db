/**
 * The kernel runner of the real kernel image (deploy/kernels/python/), spoken
 * to directly over its four ZeroMQ ports (docs/wire-contract.rst, "Kernel runner ports"), without an
 * agent: query mode, streaming, input, batch mode, interrupt, completion,
 * status, the terminal and the uid-match entrypoint.
 */
import { expect } from 'chai';
import { unpack } from 'msgpackr';
import { eventually } from '../helpers/env.js';
import { json, type Kernel, startKernel, text } from '../helpers/runner-kernel.js';

describe('kernel runner', function () {
  this.timeout(60_000);
  let k: Kernel;

  beforeEach(async function () {
    k = await startKernel();
  });

  it('runs code: print(1+1) gives "2\\n" and exit code 0; %ping answers pong!', async () => {
    const r = await k.run('code', 'print(1+1)');
    expect(r.stdout).to.equal('2\n');
    expect(r.stderr).to.equal('');
    expect(r.exitCode).to.equal(0);
    const p = await k.run('code', '%ping');
    expect(p).to.include({ stdout: 'pong!\n', exitCode: 0 });
    // output written to fds 1 and 2 directly (child processes) is captured too
    const sh = await k.run('code', 'import os\nos.system("echo from-shell; echo to-err >&2")');
    expect(sh).to.include({ stdout: 'from-shell\n', stderr: 'to-err\n', exitCode: 0 });
  });

  it('keeps one namespace across runs', async () => {
    expect((await k.run('code', 'x = 41\ndef f(a):\n    return a + 1')).exitCode).to.equal(0);
    const r = await k.run('code', 'print(f(x))');
    expect(r).to.include({ stdout: '42\n', exitCode: 0 });
  });

  it('reports an exception: traceback on stderr, exit code 1, and keeps serving', async () => {
    const r = await k.run('code', 'print("before")\n1/0');
    expect(r.stdout).to.equal('before\n');
    expect(r.stderr).to.include('Traceback').and.include('ZeroDivisionError');
    expect(r.stderr).not.to.include('runner.py');
    expect(r.exitCode).to.equal(1);
    const s = await k.run('code', 'def (');
    expect(s.stderr).to.include('SyntaxError');
    expect(s.exitCode).to.equal(1);
    expect(await k.run('code', 'print("after")')).to.include({ stdout: 'after\n', exitCode: 0 });
  });

  it('streams output while the code runs', async () => {
    const t0 = Date.now();
    const r = await k.run('code', 'import time\nfor i in range(8):\n    print(i)\n    time.sleep(0.2)');
    expect(r.exitCode).to.equal(0);
    expect(r.stdout).to.equal(
      '01234567'
        .split('')
        .map((d) => `${d}\n`)
        .join(''),
    );
    const outs = r.records.filter((x) => x.type === 'stdout');
    expect(outs.length).to.be.at.least(4);
    expect(r.finishedAt - outs[0]!.at).to.be.at.least(1000);
    expect(outs[0]!.at - t0).to.be.below(1000);
  });

  it('asks for input and returns it to input() and getpass()', async () => {
    k.mark();
    await k.send('code', 'name = input("name? ")\nprint("hello", name)\nimport getpass\npw = getpass.getpass()\nprint(len(pw))');
    expect(json(await k.next('waiting-input'))).to.deep.equal({ is_password: false });
    expect(text(k.recent, 'stdout')).to.equal('name? ');
    expect(k.recent.some((r) => r.type === 'finished')).to.equal(false);
    k.mark();
    await k.send('input', 'bob');
    expect(json(await k.next('waiting-input'))).to.deep.equal({ is_password: true });
    const head = text(k.recent, 'stdout');
    k.mark();
    await k.send('input', 'secret');
    const r = await k.result();
    expect(head + r.stdout).to.equal('hello bob\nPassword: 6\n');
    expect(r.exitCode).to.equal(0);
  });

  it('batch: a failing build skips the exec and finishes with 127', async () => {
    k.mark();
    await k.send('build', 'echo building; echo oops >&2; exit 3');
    await k.send('exec', 'echo SHOULD-NOT-RUN');
    const r = await k.result();
    const bf = r.records.find((x) => x.type === 'build-finished');
    expect(json(bf)).to.deep.equal({ exitCode: 3 });
    expect(r.records.indexOf(bf!)).to.be.below(r.records.length - 1);
    expect(r.stdout).to.equal('building\n');
    expect(r.stderr).to.equal('oops\n');
    expect(r.exitCode).to.equal(127);
    // A job after the batch: had the skipped exec run, its output would come before this one's end.
    const from = k.records.length;
    await k.send('code', 'print("after the batch")');
    await k.waitFor('the next job to finish', () => k.records.slice(from).some((x) => x.type === 'finished'));
    expect(text(k.records.slice(from), 'stdout')).to.equal('after the batch\n');
  });

  it('batch: a succeeding build, then the exec in /home/work', async () => {
    k.mark();
    await k.send('build', 'echo built > artifact.txt');
    await k.send('exec', 'cat artifact.txt; pwd; echo hi; exit 5');
    const r = await k.result();
    expect(json(r.records.find((x) => x.type === 'build-finished'))).to.deep.equal({ exitCode: 0 });
    expect(r.stdout).to.equal('built\n/home/work\nhi\n');
    expect(r.exitCode).to.equal(5);
    expect(await k.run('exec', 'echo hi')).to.include({ stdout: 'hi\n', exitCode: 0 });
  });

  it('interrupts a busy loop, a sleep and a shell command', async () => {
    // Each job says when it is in user code (its first line), and is interrupted then.
    for (const code of ['print("in", flush=True)\nwhile True: pass', 'import time\nprint("in", flush=True)\ntime.sleep(100)']) {
      k.mark();
      await k.send('code', code);
      await k.waitFor('the job to run', () => text(k.recent, 'stdout').includes('in\n'));
      // An interrupt ends the job at once, not at the job's own end (100 s away); 5 s leaves room for a loaded machine.
      const t = Date.now();
      await k.send('interrupt');
      const r = await k.result(5000);
      expect(Date.now() - t).to.be.below(5000);
      expect(r.exitCode).to.equal(1);
      expect(r.stderr).to.include('KeyboardInterrupt');
    }
    k.mark();
    await k.send('exec', 'echo in; sleep 100');
    await k.waitFor('the command to run', () => text(k.recent, 'stdout').includes('in\n'));
    await k.send('interrupt');
    expect((await k.result(5000)).exitCode).to.equal(130);
    expect(await k.run('code', 'print("still here")')).to.include({ stdout: 'still here\n', exitCode: 0 });
  });

  it('completes names from builtins and the namespace; answers status', async () => {
    await k.run('code', 'my_variable = 1');
    k.mark();
    await k.send('complete', JSON.stringify({ code: 'pri', row: 0, col: 3 }));
    expect(json(await k.next('completion'))).to.include('print');
    k.mark();
    await k.send('complete', JSON.stringify({ code: 'x = my_v' }));
    expect(json(await k.next('completion'))).to.deep.equal(['my_variable']);
    k.mark();
    await k.send('status');
    expect(unpack((await k.next('status')).data)).to.include({ busy: false, queue: 0 });
    k.mark();
    await k.send('no-such-type', 'whatever');
    expect(await k.run('code', 'print(3)')).to.include({ stdout: '3\n', exitCode: 0 });
  });

  it('runs a shell on a pty: output, %resize, restart after exit', async () => {
    await k.typeUntil('echo hi-$((40+2))\n', /hi-42/);
    expect(await k.run('code', '%resize 30 100')).to.include({ exitCode: 0 });
    await k.typeUntil('stty size\n', /30 100/);
    await k.typeUntil('exit\n', /Restarting\.\.\./);
    await k.typeUntil('echo again-$((1+1))\n', /again-2/);
  });

  it('runs as the uid of LOCAL_USER_ID with HOME=/home/work, the container staying up', async () => {
    const r = await k.run('code', 'import os\nprint(os.getuid(), os.getgid(), os.environ["HOME"], os.getcwd())');
    expect(r.stdout).to.equal('1000 1000 /home/work /home/work\n');
    await k.typeUntil('echo uid=$(id -u)\n', /uid=1000/);
    // even a runner that dies is restarted by the entrypoint
    k.mark();
    await k.send('code', 'import os\nos._exit(3)');
    await eventually(
      'the restarted runner',
      async () => {
        k.mark();
        await k.send('code', '%ping');
        await k.next('finished', 1000);
        return true;
      },
      20_000,
      0,
    );
    expect((await k.container.inspect()).State.Running).to.equal(true);
  });
});
