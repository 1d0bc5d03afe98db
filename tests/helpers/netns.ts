/**
 * A test host beyond the node: a network namespace of the test's own joined
 * to the host by a veth pair on a /30 of 198.18.0.0/15 (the benchmarking
 * range, never routed anywhere else). It stands for a manager or any host
 * on the network: it can listen (for kernels' egress) and connect (to the
 * ports the node publishes). Named `cat-<random>`, removed after the test,
 * even when it fails.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { onCleanup } from './env.js';

const exec = promisify(execFile);

/** A host in a namespace of its own: its address, the host's address facing it, and how to run a command in it. */
export interface NetnsHost {
  name: string;
  /** The namespace's address. */
  addr: string;
  /** The node's address on the link to it. */
  nodeAddr: string;
  /** Runs a command inside the namespace; resolves with its stdout. */
  run(file: string, args: string[], timeoutMs?: number): Promise<string>;
  /** A TCP server inside the namespace on `port` that answers every connection with `hello` and closes it. */
  listen(port: number): Promise<void>;
}

const ip = (...args: string[]) => exec('ip', args, { timeout: 10_000 });

/** Makes a namespace host on a fresh /30 of 198.18.0.0/15 with a route back through the node; removed after the test. */
export async function netnsHost(): Promise<NetnsHost> {
  const tag = randomBytes(3).toString('hex');
  const name = `cat-${tag}`;
  const outside = `cav${tag}`; // the node's end (interface names: 15 characters)
  const inside = `cai${tag}`;
  const n = randomBytes(2).readUInt16BE(0) % 32768; // 2^17 addresses / 4
  const base = (198 << 24) | (18 << 16) | (n << 2);
  const dotted = (v: number) => [24, 16, 8, 0].map((s) => (v >>> s) & 255).join('.');
  const nodeAddr = dotted(base + 1);
  const addr = dotted(base + 2);
  const children: Array<ReturnType<typeof spawn>> = [];
  onCleanup(async () => {
    for (const c of children) c.kill('SIGKILL');
    await ip('link', 'del', outside).catch(() => undefined);
    await ip('netns', 'del', name).catch(() => undefined);
  });
  await ip('netns', 'add', name);
  await ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside);
  await ip('link', 'set', inside, 'netns', name);
  await ip('addr', 'add', `${nodeAddr}/30`, 'dev', outside);
  await ip('link', 'set', outside, 'up');
  await ip('-n', name, 'addr', 'add', `${addr}/30`, 'dev', inside);
  await ip('-n', name, 'link', 'set', inside, 'up');
  await ip('-n', name, 'link', 'set', 'lo', 'up');
  await ip('-n', name, 'route', 'add', 'default', 'via', nodeAddr);
  const run = async (file: string, args: string[], timeoutMs = 20_000) =>
    (await exec('ip', ['netns', 'exec', name, file, ...args], { timeout: timeoutMs })).stdout;
  return {
    name,
    addr,
    nodeAddr,
    run,
    async listen(port) {
      const code = `require('net').createServer((s) => { s.on('error', () => {}); s.end('hello'); }).listen(${port}, '${addr}', () => console.log('up'))`;
      const child = spawn('ip', ['netns', 'exec', name, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(child);
      await new Promise<void>((resolve, reject) => {
        child.stdout.once('data', () => resolve());
        child.once('exit', (c) => reject(new Error(`the listener in ${name} exited (${c})`)));
      });
    },
  };
}
