/**
 * The RPC port over real ZeroMQ sockets: a running agent against the real
 * etcd, and the transport alone with a handler of the test's own.
 */
import { promises as fs } from 'node:fs';
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { pyRepr, WireErrors } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import { msgpackCodec } from '../../src/wire/codec.js';
import { RpcRouter } from '../../src/wire/router.js';
import { encodeRequestHeader } from '../../src/wire/headers.js';
import { eventually, freePort, onCleanup, remoteError, requireEtcd, startAgent } from '../helpers/env.js';

/** Whether a TCP connection accepted on this local port is still open on the accepting side (ESTABLISHED or CLOSE_WAIT in /proc/net). */
async function openOnPort(port: number): Promise<boolean> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const tables = await Promise.all(['/proc/net/tcp', '/proc/net/tcp6'].map((f) => fs.readFile(f, 'utf8').catch(() => '')));
  return tables.some((t) =>
    t
      .split('\n')
      .slice(1)
      .some((line) => {
        const [, local, , state] = line.trim().split(/\s+/);
        return local?.endsWith(`:${hex}`) === true && (state === '01' || state === '08');
      }),
  );
}

describe('RPC on a running agent', () => {
  before(requireEtcd);

  it('answers ping and reset', async () => {
    const { client } = await startAgent();
    expect(await client.call(methods.ping, 'hello')).to.equal('hello');
    expect(await client.call(methods.reset)).to.equal(null);
  });

  it('answers 2000 pings in flight at once, each with its own message', async () => {
    const { client } = await startAgent();
    const msgs = Array.from({ length: 2000 }, (_, i) => `m${i}`);
    const replies = await Promise.all(msgs.map((m) => client.call(methods.ping, m)));
    expect(replies).to.deep.equal(msgs);
  });

  it('answers unknown methods, bad arguments and unknown kernels with typed errors', async () => {
    const { client } = await startAgent();
    const nf = await remoteError(client.callRaw('nosuch', []));
    expect(nf.remoteType).to.equal('aiozmq.rpc.base.NotFoundError');
    expect(nf.remoteArgs).to.deep.equal(['nosuch']);
    const pe = await remoteError(client.callRaw('ping', ['a', 'b']));
    expect(pe.remoteType).to.equal('aiozmq.rpc.base.ParametersError');
    expect(String(pe.remoteArgs[0])).to.match(/at most 1 arguments \(2 given\)/);
    const nk = await remoteError(client.call(methods.execute, 2, 'k1', null, 'query', 'print(1)', {}));
    expect(nk.remoteType).to.equal('agent.KernelNotFound');
    expect(await client.call(methods.ping, 'still here')).to.equal('still here');
  });
});

describe('RPC transport', () => {
  async function router(handler: ConstructorParameters<typeof RpcRouter>[0]['handler']) {
    const port = await freePort();
    const r = new RpcRouter({
      endpoint: `tcp://127.0.0.1:${port}`,
      codec: msgpackCodec,
      handler,
      log: silentLogger(),
      maxMessageBytes: 1 << 20,
    });
    await r.start();
    onCleanup(() => r.close());
    const client = new AgentClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 5000 });
    onCleanup(() => client.close());
    return { r, client, port };
  }

  it('sends replies in the order they are ready, not the order of the requests', async () => {
    const done: string[] = [];
    let releaseSlow!: () => void;
    const slowGate = new Promise<void>((res) => (releaseSlow = res));
    const { client } = await router(async (req) => {
      const msg = req.kind === 'request' ? String(req.args[0]) : '';
      if (msg === 'slow') await slowGate; // ready only once the later request has been answered
      return { ok: true, value: msg };
    });
    const slow = client.callRaw('ping', ['slow']).then((v) => done.push(String(v)));
    const fast = client.callRaw('ping', ['fast']).then((v) => (done.push(String(v)), releaseSlow()));
    await Promise.all([slow, fast]);
    expect(done).to.deep.equal(['fast', 'slow']);
  });

  it('answers a handler that throws and a result that cannot be encoded with the same internal error form', async () => {
    const { client } = await router((req) => {
      if (req.method === 'throws') throw new Error('boom');
      return { ok: true, value: 2n ** 70n }; // more than msgpack's 64-bit integers hold
    });
    const threw = await remoteError(client.callRaw('throws', []));
    const unencodable = await remoteError(client.callRaw('big', []));
    for (const [err, message] of [
      [threw, 'the handler of throws failed: boom'],
      [unencodable, 'the result of big could not be encoded: '],
    ] as const) {
      expect(err.remoteType).to.equal(WireErrors.Internal);
      expect(String(err.remoteArgs[0])).to.contain(message);
      expect(err.remoteRepr).to.equal(`RuntimeError(${pyRepr(err.remoteArgs[0])}, 'agent.InternalError')`); // a builtin on the aiozmq port
    }
  });

  it('counts a reply to a peer that has gone as undeliverable (ROUTER mandatory)', async () => {
    let release!: () => void;
    const gate = new Promise<void>((res) => (release = res));
    const { r, port, client } = await router(async () => {
      await gate;
      return { ok: true, value: 'late' };
    });
    client.close(); // not used here: the only connection to the router is the dealer's
    const dealer = new zmq.Dealer({ linger: 0 });
    dealer.connect(`tcp://127.0.0.1:${port}`);
    await dealer.send([
      encodeRequestHeader({ pid: 1, random: 1, requestId: 1, time: 0 }),
      'ping',
      msgpackCodec.encode(['x']),
      msgpackCodec.encode({}),
    ]);
    await eventually('the request to arrive', () => r.snapshot().inFlight === 1);
    dealer.close();
    await eventually('the router to close its side of the connection', async () => !(await openOnPort(port)));
    release();
    await eventually('the failed send to be counted', () => r.snapshot().sendFailures === 1);
  });

  it('fails a call with a timeout error when nothing answers', async () => {
    const port = await freePort();
    const client = new AgentClient(`tcp://127.0.0.1:${port}`);
    onCleanup(() => client.close());
    let err: unknown;
    await client.callWithTimeout(200, methods.ping, 'x').catch((e: unknown) => (err = e));
    expect((err as Error).name).to.equal('RpcTimeoutError');
    expect(client.inFlight).to.equal(0);
  });
});
