/**
 * Both generations of manager on one port (PROTOCOL.md section 7), against
 * a running agent, the real etcd, ZeroMQ and (for the session walk) Docker
 * and the kernel image: an aiozmq client, a Callosum 1.x client and a
 * 0.9-framed request at once; the modern method table; pickled ext values
 * read, foreign ones refused.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { methods } from '../../src/rpc/methods.js';
import { modernMethods } from '../../src/rpc/modern-methods.js';
import { CallosumClient } from '../../src/rpc/callosum-client.js';
import { msgpackCodec } from '../../src/wire/codec.js';
import { buildCallosumRequest, parseCallosumReply } from '../../src/wire/callosum.js';
import { containersOf, eventually, onCleanup, remoteError, REPO_ROOT, requireEtcd, startAgent, uniqueName } from '../helpers/env.js';
import { ModernManager, modernKernelConfig } from '../helpers/modern-manager.js';

const fixtures = JSON.parse(readFileSync(path.join(REPO_ROOT, 'tests/unit/fixtures/modern-values.json'), 'utf8')) as { bodies: Record<string, string> };

/** Sends raw frames on a DEALER of its own and returns the first reply's frames (or null after `ms`). */
async function rawExchange(endpoint: string, frames: Buffer[], ms = 3000): Promise<Buffer[] | null> {
  const s = new zmq.Dealer({ linger: 0, receiveTimeout: ms });
  onCleanup(() => s.close());
  s.connect(endpoint);
  await s.send(frames);
  try {
    return await s.receive();
  } catch {
    return null;
  }
}

describe('Callosum managers beside aiozmq ones on one port', function () {
  this.timeout(60_000);
  before(requireEtcd);

  it('answers an aiozmq client, a Callosum 1.x client and 0.9-framed requests at the same time, each in its own framing', async () => {
    const { client, port, agent } = await startAgent();
    const endpoint = `tcp://127.0.0.1:${port}`;
    const modern = new CallosumClient(endpoint, { timeoutMs: 5000 });
    onCleanup(() => modern.close());
    const legacy = new CallosumClient(endpoint, { timeoutMs: 5000, generation: '0.9', okey: Buffer.alloc(0) });
    onCleanup(() => legacy.close());
    const n = 200;
    const [a, b, c] = await Promise.all([
      Promise.all(Array.from({ length: n }, (_, i) => client.call(methods.ping, `a${i}`))),
      Promise.all(Array.from({ length: n }, (_, i) => modern.call(modernMethods.ping, `b${i}`))),
      Promise.all(Array.from({ length: n }, (_, i) => legacy.call(modernMethods.ping, `c${i}`))),
    ]);
    expect(a).to.deep.equal(Array.from({ length: n }, (_, i) => `a${i}`));
    expect(b).to.deep.equal(Array.from({ length: n }, (_, i) => `b${i}`));
    expect(c).to.deep.equal(Array.from({ length: n }, (_, i) => `c${i}`));
    expect(await modern.call(modernMethods.health)).to.include({ status: 'ok', kernels: 0 });
    // the 2018 table is not the modern one: aiozmq's reset is there, reset_agent is not
    expect((await remoteError(client.callRaw('reset_agent', []))).remoteType).to.equal('aiozmq.rpc.base.NotFoundError');
    expect(await modern.call(modernMethods.reset_agent)).to.equal(null);
    expect(agent.stats().rpc!.callosumCalls).to.be.at.least(2 * n);

    // a raw 1.x exchange: handshake, then a reply byte-compatible with what was sent (okey as str)
    const pong = await rawExchange(endpoint, [Buffer.from('PING'), Buffer.from('h'), Buffer.from('b')]);
    expect(pong!.map(String)).to.deep.equal(['PONG', 'h', 'b']);
    const raw = await rawExchange(endpoint, buildCallosumRequest('1.x', msgpackCodec, { method: 'ping', okey: '', seq: 41, args: ['raw'] }));
    expect(raw![0]!.toString()).to.equal('UPPER');
    expect(parseCallosumReply(raw!, msgpackCodec)).to.deep.equal({ header: { type: 2, meth: 'ping', okey: '', seq: 41 }, result: { ok: true, value: 'raw' } });
  });

  it('answers an unknown method with a KeyError naming it, a not-served one with a failure naming it, bad arguments with a ParametersError', async () => {
    const { port } = await startAgent();
    const modern = new CallosumClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 5000 });
    onCleanup(() => modern.close());
    const nf = await remoteError(modern.callRaw('no_such_method', []));
    expect(nf.remoteType).to.equal('KeyError');
    expect(nf.remoteRepr).to.match(/no_such_method is not served/);
    const ns = await remoteError(modern.callRaw('check_and_pull', [{}]));
    expect(ns.remoteType).to.equal('NotImplemented');
    expect(ns.remoteRepr).to.match(/check_and_pull .*not implemented/);
    const pe = await remoteError(modern.callRaw('execute', ['s', 'k', 2]));
    expect(pe.remoteType).to.equal('ParametersError');
    expect(pe.remoteRepr).to.match(/missing a required argument: 'run_id'/);
    const nk = await remoteError(modern.call(modernMethods.interrupt_kernel, 'no-such-kernel'));
    expect(nk.remoteType).to.equal('KernelNotFound');
  });

  it('reads pickled ext values in arguments and refuses a pickle of a foreign global without running it, counting Callosum junk as dropped', async () => {
    const { port, agent } = await startAgent();
    const endpoint = `tcp://127.0.0.1:${port}`;
    const call = (method: string, inner: Buffer) => {
      const [upper, header] = buildCallosumRequest('1.x', msgpackCodec, { method, okey: '', seq: 5, args: [] });
      return rawExchange(endpoint, [upper!, header!, msgpackCodec.encode({ meta: Buffer.alloc(0), body: inner })]);
    };
    // destroy_kernel(kernel_id, session_id, <Enum KernelLifecycleEventReason.USER_REQUESTED>): read, then the kernel is not found
    const destroy = parseCallosumReply((await call('destroy_kernel', Buffer.from(fixtures.bodies.destroy_kernel!, 'hex')))!, msgpackCodec)!;
    expect(destroy.result.ok === false && destroy.result.name).to.equal('KernelNotFound');
    const marker = '/tmp/compute-agent-pickle-ran';
    const evil = parseCallosumReply((await call('ping', Buffer.from(fixtures.bodies.evil!, 'hex')))!, msgpackCodec)!;
    expect(evil.result.ok === false && evil.result.name).to.equal('ParametersError');
    expect(evil.result.ok === false && evil.result.repr).to.match(/posix\.system/);
    expect(() => readFileSync(marker)).to.throw(); // nothing ran
    const before = agent.stats().rpc!.dropped;
    expect(await rawExchange(endpoint, [Buffer.from('UPPER'), Buffer.from([0x85, 0xc1]), Buffer.alloc(0)], 500)).to.equal(null);
    await eventually('the junk is counted', () => agent.stats().rpc!.dropped === before + 1 || undefined);
  });
});

describe('a 24.09 session walk over Callosum', function () {
  this.timeout(180_000);
  before(requireEtcd);

  it('creates a session, runs code, completes, moves files, restarts, destroys and syncs, as a 24.09 manager does', async () => {
    const { port, agentId, client } = await startAgent();
    const m = new ModernManager(`tcp://127.0.0.1:${port}`);
    onCleanup(() => m.close());
    const sid = uniqueName('s');
    const kid = uniqueName('k');
    const [res] = await m.createKernels(sid, [kid], [modernKernelConfig()]);
    expect(res).to.include({ id: kid, kernel_host: '127.0.0.1', scaling_group: 'default' });
    expect(res!.service_ports).to.be.an('array');
    expect((await containersOf(agentId)).map((c) => c.Id)).to.include(res!.container_id);
    // a repeated call for the same kernel answers the same kernel (idempotent, as the 2018 create_kernel)
    const [again] = await m.createKernels(sid, [kid], [modernKernelConfig()]);
    expect(again!.container_id).to.equal(res!.container_id);

    const r = await m.executeToEnd(sid, kid, 'import os; print(1 + 1, os.environ["GREETING"])');
    expect(r.status).to.equal('finished');
    expect(JSON.stringify(r.console)).to.contain('2 hello');
    const comp = await m.client.call(modernMethods.get_completions, kid, 'impo', {});
    expect(comp.status).to.equal('finished');
    expect(await m.client.call(modernMethods.ping_kernel, kid)).to.have.property('rtt').that.is.a('number');

    await m.client.call(modernMethods.upload_file, kid, 'hello.txt', Buffer.from('hi there'));
    expect((await m.client.call(modernMethods.download_single, kid, 'hello.txt')).toString()).to.equal('hi there');
    const tar = await m.client.call(modernMethods.download_file, kid, 'hello.txt');
    expect(tar.includes(Buffer.from('hi there'))).to.equal(true);
    const listing = await m.client.call(modernMethods.list_files, kid, '.');
    expect(JSON.parse(listing.files).map((f: { filename: string }) => f.filename)).to.include('hello.txt');
    expect((await remoteError(m.client.call(modernMethods.download_single, kid, '.'))).remoteRepr).to.match(/directory/);
    expect((await m.client.call(modernMethods.get_logs, kid)).logs).to.be.a('string');

    const restarted = await m.client.call(modernMethods.restart_kernel, sid, kid, {}, {});
    expect(restarted.container_id).to.not.equal(res!.container_id);
    expect((await m.executeToEnd(sid, kid, 'print(6 * 7)', 'r2')).console).to.deep.include(['stdout', '42\n']);

    // the 2018 table sees the same kernel: one implementation behind both
    expect((await client.call(methods.list_kernels)).map((k) => k.id)).to.deep.equal([kid]);

    // sync with a manager that knows nothing: the kernel is destroyed
    const kid2 = uniqueName('k');
    await m.createKernels(sid, [kid2], [modernKernelConfig()]);
    await m.client.call(modernMethods.destroy_kernel, kid, sid, 'user-requested', false);
    await m.client.call(modernMethods.sync_kernel_registry, [[kid, sid]]);
    await eventually('the unknown kernel is gone', async () => ((await containersOf(agentId)).length === 0 ? true : undefined), 60_000);
  });

  it('refuses what it does not support in the creation config, naming the key, and rolls back only the failing kernel of a batch', async () => {
    const { port, agentId } = await startAgent();
    const m = new ModernManager(`tcp://127.0.0.1:${port}`);
    onCleanup(() => m.close());
    const sid = uniqueName('s');
    for (const [extra, key] of [
      [{ cluster_mode: 'multi-node' }, /cluster_mode/],
      [{ bootstrap_script: 'echo hi' }, /bootstrap_script/],
      [{ resource_slots: { cpu: '1', mem: '268435456', 'cuda.device': '1' } }, /cuda\.device/],
      [{ image: { canonical: 'evil/image:latest' } }, /image_allow_list/],
      [{ mounts: [{ name: 'data', host_path: '/etc', kernel_path: '/home/work/data', mount_perm: 'rw' }] }, /vfolder root/],
    ] as const) {
      const err = await remoteError(m.createKernels(sid, [uniqueName('k')], [modernKernelConfig(extra as Record<string, unknown>)]));
      expect(err.remoteType).to.equal('ParametersError');
      expect(err.remoteRepr).to.match(key);
    }
    const good = uniqueName('k');
    const bad = uniqueName('k');
    const err = await remoteError(m.createKernels(sid, [good, bad], [modernKernelConfig(), modernKernelConfig({ resource_slots: { cpu: 'lots' } })]));
    expect(err.remoteRepr).to.match(new RegExp(`resource_slots.cpu`));
    const left = await containersOf(agentId);
    expect(left.map((c) => c.Labels['io.compute-agent.kernel-id'])).to.deep.equal([good]); // the good one stays, as 24.09 leaves it
    await m.client.call(modernMethods.reset_agent);
  });
});
