/**
 * The benchmark's own programs against real ZeroMQ sockets: the C load
 * generator (bench/native/zmq-load.c, compiled by bench/lib/native.ts)
 * against the bare libzmq and zeromq.js echoes, the stock aiozmq.rpc
 * reference and a server that is not there, and the forwarding hop of the
 * streaming figure. Counts and shapes only, never timings.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { cLoad, parseCLoad } from '../../bench/lib/cload.js';
import { nativeProgram } from '../../bench/lib/native.js';
import { freePort, onCleanup, REPO_ROOT } from '../helpers/env.js';

/** Starts a server that prints "ready"; stopped at cleanup. */
async function server(cmd: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  onCleanup(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (/ready/.test(out)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`${path.basename(cmd)} exited (${code}) before it was ready`)));
  });
  return child;
}

const endpoint = async () => `tcp://127.0.0.1:${await freePort()}`;

describe('benchmark programs (C load generator, echoes, hop)', function () {
  this.timeout(60_000);

  for (const [name, start] of [
    ['the bare libzmq echo', async (e: string) => server(await nativeProgram('zmq-echo'), [e])],
    ['the bare zeromq.js echo', (e: string) => server(process.execPath, [path.join(REPO_ROOT, 'dist/bench/lib/zmq-echo.js'), e])],
    [
      'the stock aiozmq.rpc server',
      (e: string) => server(process.env.BENCH_PYTHON ?? '/usr/bin/python3', [path.join(REPO_ROOT, 'bench/reference/aiozmq_server.py'), e]),
    ],
  ] as const) {
    it(`drives ${name} with every reply checked, a histogram holding every call and samples taken from them`, async () => {
      const e = await endpoint();
      await start(e);
      const r = await cLoad(e, 8, 200, 50);
      expect(r.completed).to.be.greaterThan(0);
      expect([r.bad, r.lost]).to.deep.equal([0, 0]);
      expect(r.histogram.reduce((n, b) => n + b[2], 0)).to.equal(r.completed);
      for (const [lo, hi] of r.histogram) expect(hi).to.be.greaterThan(lo);
      expect(r.samplesUs).to.have.length(Math.min(50, r.completed));
      expect(r.p99Us).to.be.at.least(r.p50Us);
    });
  }

  it('fails a burst whose calls get no reply, saying how many were lost', async () => {
    const e = await endpoint(); // nothing listens there
    let err: Error | undefined;
    await cLoad(e, 4, 50).catch((x: Error) => (err = x));
    expect(err?.message).to.match(/0 bad replies and 4 lost of 4 calls/);
  });

  it('refuses bad arguments and reads only well-formed output', async () => {
    const bin = await nativeProgram('zmq-load');
    const code = await new Promise((resolve) => spawn(bin, ['tcp://127.0.0.1:1', '0', '10']).once('exit', resolve));
    expect(code).to.equal(2);
    expect(() => parseCLoad('not json')).to.throw(/no JSON/);
    expect(() => parseCLoad('{"completed":1}')).to.throw(/no number bad/);
  });

  it('forwards every record of a runner-like PUSH through the hop, frames unchanged and in order', async () => {
    const [runnerOut, hopOut] = [await endpoint(), await endpoint()];
    const runner = new zmq.Push({ linger: 0 });
    const client = new zmq.Pull({ linger: 0, receiveTimeout: 10_000 });
    onCleanup(() => {
      runner.close();
      client.close();
    });
    await runner.bind(runnerOut);
    await server(process.execPath, [path.join(REPO_ROOT, 'dist/bench/lib/stream-hop.js'), runnerOut, hopOut]);
    client.connect(hopOut);
    for (let i = 0; i < 100; i++) await runner.send(['stdout', Buffer.alloc(1000 + i, i)]);
    await runner.send(['finished', '{}']);
    const got: string[] = [];
    for (;;) {
      const [type, payload] = await client.receive();
      if (type!.toString() === 'finished') break;
      got.push(`${payload!.length}:${payload![0]}`);
    }
    expect(got).to.deep.equal(Array.from({ length: 100 }, (_, i) => `${1000 + i}:${i}`));
  });
});
