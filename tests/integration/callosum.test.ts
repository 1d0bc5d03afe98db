/**
 * Both generations of manager on one port (docs/modern-managers.rst), against
 * a running agent, the real etcd, ZeroMQ and (for the session walk) Docker
 * and the kernel image: an aiozmq client, a Callosum 1.x client and a
 * 0.9-framed request at once; the modern method table; pickled ext values
 * read, foreign ones refused.
 */
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPairFile } from '../../src/config/keys.js';
import type { Logger } from '../../src/log.js';
import { RpcTimeoutError } from '../../src/errors.js';
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { methods } from '../../src/rpc/methods.js';
import { modernMethods } from '../../src/rpc/modern-methods.js';
import { CallosumClient } from '../../src/rpc/callosum-client.js';
import { msgpackCodec } from '../../src/wire/codec.js';
import { buildCallosumRequest, parseCallosumReply } from '../../src/wire/callosum.js';
import {
  loopbackAgentFlags,
  AGENT_BIN,
  containersOf,
  eventually,
  freePort,
  onCleanup,
  remoteError,
  REPO_ROOT,
  requireEtcd,
  spawnAgent,
  startAgent,
  testEtcd,
  TEST_IMAGE_LANG,
  TEST_IMAGE_PREFIX,
  uniqueName,
} from '../helpers/env.js';
import { ModernManager, modernKernelConfig, packWithExt, RawExt, REDIS_ADDR, StreamReader } from '../helpers/modern-manager.js';
import type { ModernKernelResult } from '../../src/rpc/modern-methods.js';
import { inflateSync } from 'node:zlib';
import { ownRedis } from '../helpers/own-redis.js';
import { hasImage, pushTestImage, requireRegistry } from '../helpers/registry.js';
import { agentctl } from '../helpers/ctl.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const fixtures = JSON.parse(readFileSync(path.join(REPO_ROOT, 'tests/fixtures/modern-values.json'), 'utf8')) as {
  bodies: Record<string, string>;
  pickles: Record<string, string>;
};
const hex = (s: string) => Buffer.from(s, 'hex');

/** A logger that records `level message` lines (children included). */
function recordingLogger(lines: string[]): Logger {
  const make = (): Logger => ({
    error: (m) => void lines.push(`error ${m}`),
    warn: (m) => void lines.push(`warn ${m}`),
    info: (m) => void lines.push(`info ${m}`),
    debug: () => undefined,
    child: () => make(),
  });
  return make();
}

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
    const raw = await rawExchange(
      endpoint,
      buildCallosumRequest('1.x', msgpackCodec, { method: 'ping', okey: '', seq: 41, args: ['raw'] }),
    );
    expect(raw![0]!.toString()).to.equal('UPPER');
    expect(parseCallosumReply(raw!, msgpackCodec)).to.deep.equal({
      header: { type: 2, meth: 'ping', okey: '', seq: 41 },
      result: { ok: true, value: 'raw' },
    });
  });

  it('answers an unknown method with a KeyError naming it, a not-served one with a failure naming it, bad arguments with a ParametersError', async () => {
    const { port } = await startAgent();
    const modern = new CallosumClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 5000 });
    onCleanup(() => modern.close());
    const nf = await remoteError(modern.callRaw('no_such_method', []));
    expect(nf.remoteType).to.equal('KeyError');
    expect(nf.remoteRepr).to.match(/no_such_method is not served/);
    const ns = await remoteError(modern.callRaw('trigger_batch_execution', [{}]));
    expect(ns.remoteType).to.equal('NotImplemented');
    expect(ns.remoteRepr).to.match(/trigger_batch_execution .*not implemented/);
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

  it('walks a session as a 24.09 manager does, with the events read from the Redis stream and pickled ext values in the config', async () => {
    const ids = { agentId: uniqueName('i-test') };
    const events = new StreamReader(REDIS_ADDR, ids.agentId);
    onCleanup(() => events.close());
    await events.mark();
    const { port, agentId, client, agent } = await startAgent({ agentId: ids.agentId }, async (ns) => {
      await ns.put('config/redis/addr').value(REDIS_ADDR);
      await ns.put('config/agent/heartbeat_interval').value('0.5');
    });
    const m = new ModernManager(`tcp://127.0.0.1:${port}`);
    onCleanup(() => m.close());

    // 1. the manager waits for the agent's heartbeat
    await events.waitFor('agent_started', (e) => e.name === 'agent_started');
    const beat = await events.waitFor('agent_heartbeat', (e) => e.name === 'agent_heartbeat');
    const info = beat.args[0] as Record<string, unknown>;
    expect(info).to.include({ addr: agent.address, region: 'local', scaling_group: 'default', architecture: 'x86_64' });
    expect((info.resource_slots as { cpu: [string, string] }).cpu[0]).to.equal('count');
    expect(Number((info.resource_slots as { mem: [string, string] }).mem[1])).to.be.above(0);
    expect(info['images.opts']).to.deep.equal({ compression: 'zlib' });
    const images = msgpackCodec.decode(inflateSync(info.images as Buffer)) as Array<[string, string]>;
    expect(images.map((i) => i[0])).to.include(TEST_IMAGE_PREFIX + TEST_IMAGE_LANG);

    // 2. check_and_pull of the image the node has: nothing pulled, finished at once (a real pull: the next describe)
    const canonical = TEST_IMAGE_PREFIX + TEST_IMAGE_LANG;
    const tasks = await m.client.call(modernMethods.check_and_pull, { [canonical]: { canonical, digest: '', auto_pull: 'digest' } });
    expect(Object.keys(tasks)).to.deep.equal([canonical]);
    const present = await events.waitFor('image_pull_finished', (e) => e.name === 'image_pull_finished' && e.args[0] === canonical);
    expect(present.args[3]).to.equal('Image already exists');

    // 3. create_kernels with pickled ext values: resource_slots a ResourceSlot (Decimals inside), the image ref an ImageRef
    const sid = uniqueName('s');
    const kid = uniqueName('k');
    const config = { ...modernKernelConfig(), resource_slots: new RawExt(8, hex(fixtures.pickles.resource_slot!)) };
    const packed = packWithExt({
      args: [sid, [kid], [config], {}, { [kid]: new RawExt(7, hex(fixtures.pickles.image_ref!)) }],
      kwargs: {},
    });
    const [res] = (await m.client.callPacked('create_kernels', packed)) as ModernKernelResult[];
    expect(res).to.include({ id: kid, kernel_host: '127.0.0.1', scaling_group: 'default' });
    const started = await events.waitFor('kernel_started', (e) => e.name === 'kernel_started' && e.args[0] === kid);
    expect(started.args.slice(0, 3)).to.deep.equal([kid, sid, 'new-container-started']);
    expect(started.args[3]).to.include({ container_id: res!.container_id, repl_in_port: res!.repl_in_port });
    expect(
      events.seen
        .filter((e) => e.args[0] === kid)
        .map((e) => e.name)
        .slice(0, 3),
    ).to.deep.equal(['kernel_preparing', 'kernel_creating', 'kernel_started']);
    expect((await containersOf(agentId)).map((c) => c.Id)).to.include(res!.container_id);
    const [again] = await m.createKernels(sid, [kid], [modernKernelConfig()]); // idempotent
    expect(again!.container_id).to.equal(res!.container_id);

    // 4. execute until finished, completions, files
    const r = await m.executeToEnd(sid, kid, 'import os; print(1 + 1, os.environ["GREETING"])');
    expect(r.status).to.equal('finished');
    expect(JSON.stringify(r.console)).to.contain('2 hello');
    expect((await m.client.call(modernMethods.get_completions, kid, 'impo', {})).status).to.equal('finished');
    expect(await m.client.call(modernMethods.ping_kernel, kid))
      .to.have.property('rtt')
      .that.is.a('number');
    await m.client.call(modernMethods.upload_file, kid, 'hello.txt', Buffer.from('hi there'));
    expect((await m.client.call(modernMethods.download_single, kid, 'hello.txt')).toString()).to.equal('hi there');
    expect((await m.client.call(modernMethods.download_file, kid, 'hello.txt')).includes(Buffer.from('hi there'))).to.equal(true);
    const listing = await m.client.call(modernMethods.list_files, kid, '.');
    expect(JSON.parse(listing.files).map((f: { filename: string }) => f.filename)).to.include('hello.txt');
    expect((await remoteError(m.client.call(modernMethods.download_single, kid, '.'))).remoteRepr).to.match(/directory/);
    expect((await m.client.call(modernMethods.get_logs, kid)).logs).to.be.a('string');

    // 5. start_service of an app the image lacks is the failed map; restart keeps the kernel (no kernel_terminated for a restart)
    expect(await m.client.callRaw('start_service', [kid, 'jupyter', {}])).to.deep.equal({
      status: 'failed',
      error: 'invalid service name',
    });
    const restarted = await m.client.call(modernMethods.restart_kernel, sid, kid, {}, {});
    expect(restarted.container_id).to.not.equal(res!.container_id);
    expect((await m.executeToEnd(sid, kid, 'print(6 * 7)', 'r2')).console).to.deep.include(['stdout', '42\n']);
    expect((await client.call(methods.list_kernels)).map((k) => k.id)).to.deep.equal([kid]); // one implementation behind both tables

    // 6. destroy_kernel with a pickled enum reason, then kernel_terminated with that reason
    const destroyArgs = packWithExt({ args: [kid, sid, new RawExt(6, hex(fixtures.pickles.enum_reason!))], kwargs: {} });
    await m.client.callPacked('destroy_kernel', destroyArgs);
    const terminated = await events.waitFor('kernel_terminated', (e) => e.name === 'kernel_terminated' && e.args[0] === kid);
    expect(terminated.args).to.deep.equal([kid, sid, 'user-requested', -1]);
    expect(events.seen.filter((e) => e.name === 'kernel_terminated' && e.args[0] === kid)).to.have.length(1);

    // 7. sync_kernel_registry: a kernel the manager does not know is destroyed without an event, one it knows but is gone is reported
    const kid2 = uniqueName('k');
    await m.createKernels(sid, [kid2], [modernKernelConfig()]);
    const old = uniqueName('k'); // a 2018 manager's kernel on the same agent: not the modern manager's to reap
    await client.call(methods.create_kernel, old, { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 256 } });
    await m.client.call(modernMethods.sync_kernel_registry, [[kid, sid]]);
    const gone = await events.waitFor('already-terminated', (e) => e.name === 'kernel_terminated' && e.args[2] === 'already-terminated');
    expect(gone.args.slice(0, 2)).to.deep.equal([kid, sid]);
    await eventually('the unknown kernel is gone', async () => ((await containersOf(agentId)).length === 1 ? true : undefined), 60_000);
    expect((await client.call(methods.list_kernels)).map((k) => k.id)).to.deep.equal([old]);
    expect(events.seen.some((e) => e.name === 'kernel_terminated' && e.args[0] === kid2)).to.equal(false);
    expect(agent.stats().modernEvents.dropped).to.equal(0);
  });

  it('refuses what it does not support in the creation config, naming the key, and rolls back only the failing kernel of a batch', async () => {
    const { port, agentId } = await startAgent();
    const m = new ModernManager(`tcp://127.0.0.1:${port}`);
    onCleanup(() => m.close());
    const sid = uniqueName('s');
    for (const [extra, key] of [
      [{ cluster_mode: 'cross-cloud' }, /cluster_mode/],
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
    const err = await remoteError(
      m.createKernels(sid, [good, bad], [modernKernelConfig(), modernKernelConfig({ resource_slots: { cpu: 'lots' } })]),
    );
    expect(err.remoteRepr).to.match(new RegExp(`resource_slots.cpu`));
    const left = await containersOf(agentId);
    expect(left.map((c) => c.Labels['io.compute-agent.kernel-id'])).to.deep.equal([good]); // the good one stays, as 24.09 leaves it
    await m.client.call(modernMethods.reset_agent);
  });
});

describe('assign_port, release_port and the image and GPU methods of modern managers', function () {
  this.timeout(240_000);
  before(requireEtcd);

  it('pulls with check_and_pull and its events, holds manager-assigned ports out of kernels until release_port, purges by canonical name', async () => {
    await requireRegistry();
    const pushed = await pushTestImage({ noiseBytes: 500_000 });
    const lo = 21000 + 12 * Math.floor(Math.random() * 600);
    const ids = { agentId: uniqueName('i-test') };
    const events = new StreamReader(REDIS_ADDR, ids.agentId);
    onCleanup(() => events.close());
    await events.mark();
    const { port, client, agent } = await startAgent({ agentId: ids.agentId }, async (ns) => {
      await ns.put('config/redis/addr').value(REDIS_ADDR);
      await ns.put('config/agent/container_port_range').value(`${lo}-${lo + 11}`);
      await ns.put('config/agent/port_reuse_cooldown').value('0');
      await ns.put('config/agent/image_prefix').value(pushed.prefix);
    });
    const m = new ModernManager(`tcp://127.0.0.1:${port}`);
    onCleanup(() => m.close());

    // no GPU on this node: nothing is held
    expect(await m.client.call(modernMethods.scan_gpu_alloc_map)).to.deep.equal({});

    // check_and_pull: a name outside image_prefix refuses the whole call, nothing starts; the pushed image is pulled
    const outside = await remoteError(m.client.call(modernMethods.check_and_pull, { [pushed.image]: {}, 'elsewhere/kernel-python:3': {} }));
    expect(outside.remoteType).to.equal('ParametersError');
    expect(outside.remoteRepr).to.match(/"elsewhere\/kernel-python:3" is not under .*image_prefix/);
    expect(await hasImage(pushed.image)).to.equal(false);
    const tasks = await m.client.call(modernMethods.check_and_pull, {
      [pushed.image]: { canonical: pushed.image, digest: '', auto_pull: 'digest' },
    });
    expect(tasks[pushed.image]).to.match(/^[0-9a-f]{32}$/);
    const finished = await events.waitFor(
      'image_pull_finished',
      (e) => e.name === 'image_pull_finished' && e.args[0] === pushed.image,
      60_000,
    );
    expect(finished.args.slice(0, 2)).to.deep.equal([pushed.image, ids.agentId]);
    expect(finished.args[3]).to.equal(null);
    expect(events.seen.filter((e) => e.args[0] === pushed.image).map((e) => e.name)).to.deep.equal([
      'image_pull_started',
      'image_pull_finished',
    ]);
    expect(await hasImage(pushed.image)).to.equal(true);

    // ports: two assigned, a kernel published on none of them, a kernel's port not the manager's to release
    const a = await m.client.call(modernMethods.assign_port);
    const b = await m.client.call(modernMethods.assign_port);
    expect([a, b].every((p) => p >= lo && p <= lo + 11) && a !== b).to.equal(true);
    const kid = uniqueName('k');
    const info = await client.call(methods.create_kernel, kid, { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 256 } });
    const kernelPorts = [info.repl_in_port, info.repl_out_port, info.stdin_port, info.stdout_port];
    expect(kernelPorts.filter((p) => p === a || p === b)).to.deep.equal([]);
    expect(agent.portStats()).to.include({ held: 6 });
    const theirs = await remoteError(m.client.call(modernMethods.release_port, kernelPorts[0]!));
    expect(theirs.remoteType).to.equal('ParametersError');
    expect(theirs.remoteRepr).to.match(/not given out by assign_port: container [0-9a-f]{12} holds it/);
    expect(await m.client.call(modernMethods.release_port, a)).to.equal(null);
    expect(await m.client.call(modernMethods.release_port, a)).to.equal(null); // free already: a no-op
    expect(agent.portStats()).to.include({ held: 5 });
    await client.call(methods.destroy_kernel, kid);

    // purge_images by canonical name: one outside the prefix is refused on its own
    const purged = await m.client.call(modernMethods.purge_images, [pushed.image, 'elsewhere/kernel-python:3'], false, false);
    expect(purged.responses).to.deep.include({ image: pushed.image, error: null });
    expect(purged.responses.find((r) => r.image === 'elsewhere/kernel-python:3')?.error).to.match(/not under this agent's image_prefix/);
    expect(await hasImage(pushed.image)).to.equal(false);
  });
});

describe('the Redis event stream in an outage', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('keeps RPC unaffected while Redis is stopped, drops and counts events meanwhile, and resumes when it returns', async () => {
    const redis = await ownRedis();
    const agentId = uniqueName('i-test');
    const lines: string[] = [];
    const { port, agent, client } = await startAgent(
      { agentId },
      async (ns) => {
        await ns.put('config/redis/addr').value(redis.addr);
        await ns.put('config/agent/heartbeat_interval').value('0.2');
        await ns.put('config/agent/event_queue_limit').value('5');
      },
      recordingLogger(lines),
    );
    const m = new ModernManager(`tcp://127.0.0.1:${port}`, { timeoutMs: 5000 });
    onCleanup(() => m.close());
    const first = new StreamReader(redis.addr, agentId);
    onCleanup(() => first.close());
    await first.waitFor('a heartbeat', (e) => e.name === 'agent_heartbeat');

    await redis.stop();
    const droppedBefore = agent.stats().modernEvents.dropped;
    // beats go on: past the queue bound of 5 they are dropped and counted; RPC of both generations answers meanwhile
    await eventually('events dropped', () => (agent.stats().modernEvents.dropped > droppedBefore + 3 ? true : undefined), 30_000);
    expect(await m.client.call(modernMethods.ping, 'still')).to.equal('still');
    expect(await client.call(methods.ping, 'here')).to.equal('here');

    await redis.start();
    const again = new StreamReader(redis.addr, agentId); // the old stream went with the server: read the new one from its start
    onCleanup(() => again.close());
    await again.waitFor('a heartbeat after the outage', (e) => e.name === 'agent_heartbeat', 30_000);
    const dropped = agent.stats().modernEvents.dropped;
    await again.waitFor('more heartbeats', () => again.seen.filter((e) => e.name === 'agent_heartbeat').length >= 3, 30_000);
    expect(agent.stats().modernEvents.dropped).to.equal(dropped); // flowing again: nothing more dropped
    // one line when the outage began, one when it ended, however many reconnects and drops lay between
    expect(lines.filter((l) => l.startsWith('warn the Redis event stream does not take events'))).to.have.length(1);
    expect(lines.filter((l) => l.startsWith('info the Redis event stream takes events again'))).to.have.length(1);
  });
});

describe('CURVE for modern managers on a second port', function () {
  this.timeout(60_000);
  before(requireEtcd);

  it('admits the listed manager key, gives a wrong key nothing, keeps the 2018 port NULL, and tells the key and address in the heartbeat', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-keys-'));
    onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
    const keyFile = path.join(dir, 'agent.key');
    const keys = await generateKeyPairFile(keyFile);
    const manager = zmq.curveKeyPair();
    const curvePort = await freePort();
    const agentId = uniqueName('i-test');
    const events = new StreamReader(REDIS_ADDR, agentId);
    onCleanup(() => events.close());
    await events.mark();
    const { port, client, agent } = await startAgent({ agentId }, async (ns) => {
      await ns.put('config/agent/callosum_curve_port').value(String(curvePort));
      await ns.put('config/agent/callosum_keypair_file').value(keyFile);
      await ns.put('config/agent/callosum_manager_keys').value(manager.publicKey);
      await ns.put('config/agent/heartbeat_interval').value('0.5');
      await ns.put('config/redis/addr').value(REDIS_ADDR);
    });
    const endpoint = `tcp://127.0.0.1:${curvePort}`;
    const good = new CallosumClient(endpoint, { timeoutMs: 5000, curve: { serverKey: keys.publicKey, ...manager } });
    onCleanup(() => good.close());
    expect(await good.call(modernMethods.ping, 'curve')).to.equal('curve');

    const stranger = zmq.curveKeyPair();
    const wrong = new CallosumClient(endpoint, { timeoutMs: 1500, handshakeMs: 1500, curve: { serverKey: keys.publicKey, ...stranger } });
    onCleanup(() => wrong.close());
    const err = await wrong.call(modernMethods.ping, 'no').then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(RpcTimeoutError);
    await eventually('the refusal is counted', () => (agent.stats().rpcCurve!.authRefused > 0 ? true : undefined));
    const plain = new CallosumClient(endpoint, { timeoutMs: 1500, handshakeMs: 1500 });
    onCleanup(() => plain.close());
    expect(
      await plain.call(modernMethods.ping, 'no').then(
        () => null,
        (e: unknown) => e,
      ),
    ).to.be.instanceOf(RpcTimeoutError);

    // the 2018 port is unchanged: NULL, aiozmq, answered
    expect(await client.call(methods.ping, 'null')).to.equal('null');
    expect(port).to.not.equal(curvePort);

    const beat = await events.waitFor('agent_heartbeat', (e) => e.name === 'agent_heartbeat');
    expect(beat.args[0]).to.include({ public_key: keys.publicKey, addr: `tcp://127.0.0.1:${curvePort}` });
  });
});

describe('agentctl --callosum', function () {
  this.timeout(60_000);
  before(requireEtcd);

  it('checks an agent the way a modern manager will: handshake, ping, health, and calls by name', async () => {
    const { port } = await startAgent();
    const at = ['--agent', `tcp://127.0.0.1:${port}`, '--callosum'];
    const ping = await agentctl([...at, 'ping']);
    expect(ping.code, ping.stderr).to.equal(0);
    expect(ping.stdout).to.match(/pong over Callosum 1\.x from tcp:\/\/127\.0\.0\.1:\d+ .* 0 kernel\(s\)/);
    const hw = await agentctl([...at, 'call', 'gather_hwinfo']);
    expect(JSON.parse(hw.stdout)).to.have.nested.property('cpu.status', 'healthy');
    const missing = await agentctl([...at, 'call', 'no_such_method']);
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.match(/no_such_method is not served.*KeyError/);
    const old = await agentctl(['--agent', `tcp://127.0.0.1:${port}`, 'call', 'ping', '"x"']);
    expect(old.stdout.trim()).to.equal('"x"'); // without --callosum: the 2018 table over aiozmq
  });

  it('lists the modern table with `agent methods --modern`, from the same declarations, and what is not served', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [AGENT_BIN, 'methods', '--modern']);
    for (const name of Object.keys(modernMethods)) expect(stdout).to.match(new RegExp(`^${name}\\(`, 'm'));
    expect(stdout).to.match(/^execute\(session_id: .*, kernel_id: .*, api_version: .*flush_timeout: float/m);
    expect(stdout).to.match(/not served yet .*update_scaling_group.*trigger_batch_execution/);
    expect(stdout).to.not.match(/not served yet .*(create_local_network|push_image)/);
    expect(stdout).to.match(/^assign_port\(\) -> port number/m);
  });
});

describe('shutdown_agent', function () {
  this.timeout(60_000);
  before(requireEtcd);

  it('answers, then drains and stops the agent process as SIGTERM does (agent_terminated on the stream, deregistered, exit 0)', async () => {
    const namespace = uniqueName('test');
    const agentId = uniqueName('i-test');
    const { ns } = testEtcd(namespace);
    await ns.put('config/redis/addr').value(REDIS_ADDR);
    const events = new StreamReader(REDIS_ADDR, agentId);
    onCleanup(() => events.close());
    await events.mark();
    const port = await freePort();
    const proc = spawnAgent(await loopbackAgentFlags({ namespace, agentId, port }));
    await proc.waitFor(/"message":"agent running"/);
    expect(await ns.get(`nodes/agents/${agentId}`).string()).to.equal('running');
    const m = new ModernManager(`tcp://127.0.0.1:${port}`, { timeoutMs: 10_000 });
    onCleanup(() => m.close());
    expect(await m.client.call(modernMethods.shutdown_agent, false)).to.equal(null);
    expect(await proc.exited).to.equal(0);
    expect(proc.stderr()).to.match(/"message":"agent stopping"/);
    expect(await ns.get(`nodes/agents/${agentId}`).string()).to.equal(null);
    const bye = await events.waitFor('agent_terminated', (e) => e.name === 'agent_terminated');
    expect(bye.args).to.deep.equal(['shutdown-agent']);
  });
});

describe('Callosum from Python (pyzmq and msgpack as a 24.09 manager packs)', function () {
  this.timeout(60_000);
  before(requireEtcd);

  it('handshakes, calls, reads failures, and gets a refusal for a pickle of os.system, which never runs', async () => {
    const { port } = await startAgent();
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pickle-marker-'));
    onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
    const marker = path.join(dir, 'ran');
    const { stdout } = await promisify(execFile)(
      '/usr/bin/python3',
      [path.join(REPO_ROOT, 'tests/interop/callosum_client.py'), `tcp://127.0.0.1:${port}`, marker],
      { timeout: 30_000 },
    );
    const out = JSON.parse(stdout) as Record<string, { result?: unknown; failure?: string; repr?: string }> & { handshake: string[] };
    expect(out.handshake).to.deep.equal(['PONG', '', '']);
    expect(out.ping).to.deep.equal({ result: 'from python' });
    expect(out.health!.result).to.include({ status: 'ok' });
    expect(out.destroy_enum).to.include({ failure: 'KernelNotFound' });
    expect(out.evil).to.include({ failure: 'ParametersError' });
    expect(out.evil!.repr).to.match(/posix\.system/);
    expect(out.unknown).to.include({ failure: 'KeyError' });
    expect(out.legacy_09).to.deep.equal({ result: 'from 0.9' });
    expect(
      await fs.stat(marker).then(
        () => true,
        () => false,
      ),
    ).to.equal(false);
  });
});
