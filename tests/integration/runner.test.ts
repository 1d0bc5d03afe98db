/**
 * The kernel runner of the real kernel image (deploy/kernels/python/), spoken
 * to directly over its four ZeroMQ ports (docs/wire-contract.rst, "Kernel runner ports"), without an
 * agent: query mode, streaming, input, batch mode, interrupt, completion,
 * status, the terminal and the uid-match entrypoint.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import { unpack } from 'msgpackr';
import * as zmq from 'zeromq';
import { eventually, onCleanup, TEST_IMAGE_LANG, TEST_IMAGE_PREFIX, uniqueName } from '../helpers/env.js';

const docker = new Docker();
const IMAGE = `${TEST_IMAGE_PREFIX}${TEST_IMAGE_LANG}`;
const PORTS = [2000, 2001, 2002, 2003];

interface Rec {
  type: string;
  data: Buffer;
  at: number;
}

interface Run {
  records: Rec[];
  stdout: string;
  stderr: string;
  exitCode: number | null;
  finishedAt: number;
}

const text = (recs: Rec[], type: string) => Buffer.concat(recs.filter((r) => r.type === type).map((r) => r.data)).toString('utf8');
const json = (r: Rec | undefined): any => (r ? JSON.parse(r.data.toString('utf8')) : undefined);

/** A kernel container and the four sockets connected to it. */
class Kernel {
  records: Rec[] = [];
  term: Buffer[] = [];
  private base = 0;
  private wake = new Set<() => void>();

  constructor(
    readonly container: Docker.Container,
    readonly push: zmq.Push,
    readonly pull: zmq.Pull,
    readonly pub: zmq.Publisher,
    readonly sub: zmq.Subscriber,
  ) {
    void this.read(pull, (msg) => this.records.push({ type: msg[0]!.toString('utf8'), data: msg[1] ?? Buffer.alloc(0), at: Date.now() }));
    void this.read(sub, (msg) => this.term.push(msg[0]!));
  }

  private async read(sock: zmq.Pull | zmq.Subscriber, on: (msg: Buffer[]) => void): Promise<void> {
    try {
      for await (const msg of sock) {
        on(msg);
        for (const w of this.wake) w();
      }
    } catch {
      // closed
    }
  }

  /** Records received since the last mark. */
  get recent(): Rec[] {
    return this.records.slice(this.base);
  }

  /** Forgets the records received so far. */
  mark(): void {
    this.base = this.records.length;
  }

  async send(type: string, payload: string | Buffer = ''): Promise<void> {
    await this.push.send([type, payload]);
  }

  /** Resolves when `pred` holds of what was received; rejects after the timeout. */
  waitFor<T>(what: string, pred: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const v = pred();
        if (v) {
          this.wake.delete(check);
          clearTimeout(timer);
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        this.wake.delete(check);
        reject(new Error(`timed out waiting for ${what}; records: ${JSON.stringify(this.recent.map((r) => [r.type, r.data.toString()]))}`));
      }, timeoutMs);
      this.wake.add(check);
      check();
    });
  }

  /** The first record of this type since the mark. */
  next(type: string, timeoutMs = 10_000): Promise<Rec> {
    return this.waitFor(`a ${type} record`, () => this.recent.find((r) => r.type === type), timeoutMs);
  }

  /** Sends one record and waits for the `finished` of its run. */
  async run(type: string, payload: string, timeoutMs = 10_000): Promise<Run> {
    this.mark();
    await this.send(type, payload);
    return this.result(timeoutMs);
  }

  async result(timeoutMs = 10_000): Promise<Run> {
    const fin = await this.next('finished', timeoutMs);
    const records = this.recent.slice(0, this.recent.indexOf(fin) + 1);
    return { records, stdout: text(records, 'stdout'), stderr: text(records, 'stderr'), exitCode: json(fin).exitCode, finishedAt: fin.at };
  }

  /** Terminal output received so far. */
  termText(): string {
    return Buffer.concat(this.term).toString('utf8');
  }

  /** Types into the terminal until its output matches (the first bytes may be lost while PUB/SUB connect). */
  async typeUntil(input: string, pattern: RegExp, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.termText())) {
      if (Date.now() > deadline) throw new Error(`terminal output did not match ${pattern}; got ${JSON.stringify(this.termText())}`);
      await this.pub.send(Buffer.from(input));
      await this.waitFor('terminal output', () => pattern.test(this.termText()), 1000).catch(() => undefined);
    }
  }
}

/** Starts a kernel container as the agent would (uid-match, ports on 127.0.0.1, a home of its own) and waits for its runner. */
async function startKernel(): Promise<Kernel> {
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'runner-home-'));
  onCleanup(() => fs.rm(home, { recursive: true, force: true }));
  await fs.chown(home, 1000, 1000);
  const name = uniqueName('runner-test');
  const container = await docker.createContainer({
    name,
    Image: IMAGE,
    Labels: { 'compute-agent.test': '1' },
    Env: ['LOCAL_USER_ID=1000'],
    ExposedPorts: Object.fromEntries(PORTS.map((p) => [`${p}/tcp`, {}])),
    HostConfig: {
      Binds: [`${home}:/home/work:rw`],
      PortBindings: Object.fromEntries(PORTS.map((p) => [`${p}/tcp`, [{ HostIp: '127.0.0.1', HostPort: '' }]])),
    },
  });
  onCleanup(() => container.remove({ force: true }).catch(() => undefined));
  await container.start();
  const info = await container.inspect();
  const port = (p: number) => {
    const b = info.NetworkSettings.Ports[`${p}/tcp`];
    if (!b?.[0]?.HostPort) throw new Error(`port ${p} is not published`);
    return `tcp://127.0.0.1:${b[0].HostPort}`;
  };
  const push = new zmq.Push({ linger: 0 });
  const pull = new zmq.Pull({ linger: 0 });
  const pub = new zmq.Publisher({ linger: 0 });
  const sub = new zmq.Subscriber({ linger: 0 });
  onCleanup(() => {
    for (const s of [push, pull, pub, sub]) s.close();
  });
  push.connect(port(2000));
  pull.connect(port(2001));
  pub.connect(port(2002));
  sub.connect(port(2003));
  sub.subscribe();
  const k = new Kernel(container, push, pull, pub, sub);

  // ZeroMQ may connect through Docker's port proxy before the runner binds: ping until it answers.
  await eventually(
    'the runner to answer %ping',
    async () => {
      await k.send('code', '%ping');
      await k.waitFor('pong', () => text(k.records, 'stdout').includes('pong!'), 1000);
      return true;
    },
    30_000,
    0,
  );
  // Jobs run in order: once a last job's output and end arrive, so have the answers of every earlier ping.
  const from = k.records.length;
  await k.send('code', 'print("settled")');
  await k.waitFor('the last job of the start', () => {
    const recs = k.records.slice(from);
    const at = recs.findIndex((r) => r.type === 'stdout' && r.data.toString('utf8').includes('settled'));
    return at >= 0 && recs.slice(at).some((r) => r.type === 'finished');
  });
  k.mark();
  return k;
}

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
