/** A kernel container spoken to directly over the runner's four ZeroMQ ports, without an agent (docs/wire-contract.rst, "Kernel runner ports"). */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import * as zmq from 'zeromq';
import { eventually, onCleanup, TEST_IMAGE_LANG, TEST_IMAGE_PREFIX, uniqueName } from './env.js';

const docker = new Docker();
const IMAGE = `${TEST_IMAGE_PREFIX}${TEST_IMAGE_LANG}`;
const PORTS = [2000, 2001, 2002, 2003];

/** One record the runner sent, and when it came. */
export interface Rec {
  type: string;
  data: Buffer;
  at: number;
}

/** The records of one run up to its `finished`, and its text. */
export interface Run {
  records: Rec[];
  stdout: string;
  stderr: string;
  exitCode: number | null;
  finishedAt: number;
}

/** The text of the records of one type. */
export const text = (recs: Rec[], type: string) => Buffer.concat(recs.filter((r) => r.type === type).map((r) => r.data)).toString('utf8');
/** A record's payload as JSON. */
export const json = (r: Rec | undefined): any => (r ? JSON.parse(r.data.toString('utf8')) : undefined);

/** A kernel container and the four sockets connected to it. */
export class Kernel {
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

/** How startKernel starts its container: the image (default: the test kernel image), extra environment, and whether its code is shell (CA_KERNEL_MODE=shell). */
export interface KernelOptions {
  image?: string;
  env?: string[];
  shell?: boolean;
}

/** Starts a kernel container as the agent would (uid-match, ports on 127.0.0.1, a home of its own) and waits for its runner. */
export async function startKernel({ image = IMAGE, env = [], shell = false }: KernelOptions = {}): Promise<Kernel> {
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'runner-home-'));
  onCleanup(() => fs.rm(home, { recursive: true, force: true }));
  await fs.chown(home, 1000, 1000);
  const name = uniqueName('runner-test');
  const container = await docker.createContainer({
    name,
    Image: image,
    Labels: { 'compute-agent.test': '1' },
    Env: ['LOCAL_USER_ID=1000', ...env],
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
  await k.send('code', shell ? 'echo settled' : 'print("settled")');
  await k.waitFor('the last job of the start', () => {
    const recs = k.records.slice(from);
    const at = recs.findIndex((r) => r.type === 'stdout' && r.data.toString('utf8').includes('settled'));
    return at >= 0 && recs.slice(at).some((r) => r.type === 'finished');
  });
  k.mark();
  return k;
}
