/**
 * What the managers see (docs/wire-contract.rst, "RPC", "Stats in Redis",
 * "Abandoned creates"), against the real etcd, Docker, a Redis server of the
 * test's own and a real 2018-style client: the stock aiozmq.rpc client
 * handling errors as the 2018 manager 1.3 does (tests/interop/manager_2018.py),
 * a Redis client reading the hashes as that manager does (HGETALL when
 * kernel_terminated arrives), and a Callosum client as a modern manager.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { methods } from '../../src/rpc/methods.js';
import { msgpackCodec } from '../../src/wire/codec.js';
import { WireErrors } from '../../src/errors.js';
import {
  containersOf,
  eventually,
  kernelIds,
  onCleanup,
  remoteError,
  REPO_ROOT,
  requireEtcd,
  startAgent,
  TEST_IMAGE_LANG,
  uniqueName,
} from '../helpers/env.js';
import { sink } from '../helpers/sink.js';
import { ownRedis } from '../helpers/own-redis.js';
import { capturedLog } from '../helpers/log-capture.js';
import { ModernManager, modernKernelConfig } from '../helpers/modern-manager.js';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3'; // Debian's, which has python3-aiozmq
const SCRIPT = path.join(REPO_ROOT, 'tests/interop/manager_2018.py');

const FIELDS = [
  'cpu_used',
  'mem_max_bytes',
  'mem_cur_bytes',
  'net_rx_bytes',
  'net_tx_bytes',
  'io_read_bytes',
  'io_write_bytes',
  'io_max_scratch_size',
  'io_cur_scratch_size',
];

const config = (extra: Record<string, unknown> = {}) => ({
  lang: TEST_IMAGE_LANG,
  limits: { cpu_slot: 1, mem_slot: 128 },
  mounts: [],
  environ: {},
  ...extra,
});

/** A Redis client reading database 0 of `addr`, as the managers do; closed after the test. */
function reader(addr: string): Redis {
  const [host, port] = addr.split(':');
  const r = new Redis({ host, port: Number(port), db: 0, lazyConnect: false, maxRetriesPerRequest: 1 });
  r.on('error', () => undefined); // the outage test stops the server under it; its calls fail on their own
  onCleanup(() => void r.disconnect());
  return r;
}

interface AsManager {
  answer: string;
  name?: string;
  args?: unknown[];
  value?: unknown;
  exception?: string;
}

describe("the managers' view", function () {
  this.timeout(120_000);
  before(async function () {
    await requireEtcd();
    if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: deploy/dev/up.sh installs python3-aiozmq`);
  });

  it('every refusal reaches the 2018 manager under a builtin name; destroy of an unknown kernel is nil and reported not-found', async () => {
    const s = await sink();
    const a = await startAgent({}, async (ns) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
    });
    const { stdout } = await run(PYTHON, [SCRIPT, 'errors', `tcp://127.0.0.1:${a.port}`], { timeout: 60_000 });
    const r = JSON.parse(stdout) as Record<string, AsManager>;
    const expectAgentError = (key: string, name: string, kind: string, message: RegExp) => {
      expect(r[key]!.answer, `${key}: ${JSON.stringify(r[key])}`).to.equal('agent-error');
      expect(r[key]!.name, key).to.equal(name);
      expect(r[key]!.args![0], key).to.match(message);
      expect(r[key]!.args![1], key).to.equal(kind); // the agent's own kind, in agent-details
    };
    expectAgentError('execute', 'RuntimeError', 'agent.KernelNotFound', /no kernel with id no-such-kernel/);
    expectAgentError('interrupt_kernel', 'KeyError', 'agent.KernelNotFound', /no kernel with id no-such-kernel/);
    expectAgentError('get_logs', 'KeyError', 'agent.KernelNotFound', /no kernel with id no-such-kernel/);
    expectAgentError(
      'create_too_big',
      'AssertionError',
      WireErrors.Parameters,
      /asks for 16777216 MiB.*more than this node will ever hold/,
    );
    expectAgentError('create_missing_image', 'LookupError', 'agent.ImageNotFound', /python:0-nosuch is not on this node/);
    expect(r.destroy_kernel).to.deep.equal({ answer: 'ok', value: null });
    const ended = await s.next('kernel_terminated');
    expect(ended.args).to.deep.equal(['no-such-kernel', 'not-found', null]);
    // the typed client still shows the agent's own kind
    const typed = await remoteError(a.client.call(methods.interrupt_kernel, 'no-such-kernel'));
    expect(typed.remoteType).to.equal(WireErrors.KernelNotFound);
    expect(typed.remoteArgs).to.have.length(1);
    expect(await a.client.call(methods.destroy_kernel, 'no-such-kernel')).to.equal(null);
  });

  it('writes the 2018 hash every interval, with an expiry; a Redis outage costs only the stats, said once', async () => {
    const redis = await ownRedis();
    const s = await sink();
    const log = capturedLog();
    const a = await startAgent(
      {},
      async (ns) => {
        await ns.put('nodes/manager/event_addr').value(s.addr);
        await ns.put('nodes/redis').value(redis.addr);
        await ns.put('config/agent/stats_interval').value('0.3');
        await ns.put('config/agent/heartbeat_interval').value('0.3');
      },
      log.logger,
    );
    const r = reader(redis.addr);
    const id = uniqueName('k');
    await a.client.callWithTimeout(60_000, methods.create_kernel, id, config());
    const first = await eventually<Record<string, string> | null>('the kernel hash with every field', async () => {
      const h = await r.hgetall(id);
      return FIELDS.every((f) => f in h) ? h : null;
    });
    for (const f of FIELDS) expect(first![f], f).to.match(/^\d+$/);
    expect(Number(first!.mem_cur_bytes)).to.be.greaterThan(0);
    const ttl = await r.ttl(id);
    expect(ttl).to.be.within(1, 30);

    // Redis goes away: RPC and heartbeats go on, the outage is said once
    await redis.stop();
    await log.waitFor(/does not take the kernels' stats/);
    await a.agent.afterHeartbeats(4); // several rounds of stats dropped meanwhile
    expect(await a.client.callWithTimeout(2000, methods.ping, 'still here')).to.equal('still here');
    expect(log.lines.filter((l) => /does not take the kernels' stats/.test(l))).to.have.length(1);
    await redis.start();
    await log.waitFor(/takes the kernels' stats again/, 20_000);

    expect(a.agent.statsWriter!.snapshot().legacy.dropped).to.be.greaterThan(0);
    await a.client.callWithTimeout(60_000, methods.destroy_kernel, id);
  });

  it('writes the modern kernel and node keys for a modern session, in the modern encoding', async () => {
    const redis = await ownRedis();
    const a = await startAgent({}, async (ns) => {
      await ns.put('config/redis/addr').value(redis.addr);
      await ns.put('config/agent/stats_interval').value('0.3');
    });
    const m = new ModernManager(`tcp://127.0.0.1:${a.port}`);
    onCleanup(() => m.close());
    const sid = uniqueName('s');
    const kid = uniqueName('k');
    await m.createKernels(sid, [kid], [modernKernelConfig()]);
    const r = reader(redis.addr);
    type Metric = Record<string, string | null>;
    // two rounds give a rate: wait for a cpu_util whose moving statistics saw two points
    const metrics = await eventually<Record<string, Metric> | null>(
      'the modern kernel stats',
      async () => {
        const raw = await r.getBuffer(kid);
        const m = raw ? (msgpackCodec.decode(raw) as Record<string, Metric>) : undefined;
        return m && m.cpu_util?.['stats.avg'] !== undefined && m.mem?.capacity !== null ? m : null;
      },
      20_000,
    ).then((m) => m!);
    expect(Object.keys(metrics).sort()).to.deep.equal(
      ['cpu_used', 'cpu_util', 'io_read', 'io_scratch_size', 'io_write', 'mem', 'net_rx', 'net_tx'].sort(),
    );
    expect(metrics.cpu_util).to.include({ unit_hint: 'percent', capacity: '1000' });
    expect(metrics.cpu_util!.pct).to.match(/^\d+(\.\d+)?$/);
    expect(metrics.mem).to.include({ unit_hint: 'bytes', capacity: String(256 * 1024 * 1024) }); // resource_slots.mem
    expect(Number(metrics.mem!.current)).to.be.greaterThan(0);
    expect(metrics.mem).to.have.property('stats.max');
    expect(await r.ttl(kid)).to.be.greaterThan(0);
    // nothing of this kernel goes to a 2018 hash
    const node = msgpackCodec.decode((await r.getBuffer(a.agentId))!) as { node: Record<string, Metric>; devices: unknown };
    expect(Object.keys(node.node).sort()).to.deep.equal(['cpu_util', 'disk', 'mem']);
    expect(Number(node.node.mem!.capacity)).to.be.greaterThan(0);
    expect(await r.ttl(a.agentId)).to.be.within(1, 120);
  });

  it("destroys a kernel whose create outlived the 2018 manager's 3 s (create-abandoned), its last stats in Redis before kernel_terminated", async () => {
    const s = await sink();
    const redis = await ownRedis();
    const a = await startAgent({}, async (ns) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
      await ns.put('nodes/redis').value(redis.addr);
      await ns.put('config/agent/stats_interval').value('3600'); // no periodic round: the hash can only be the write at destroy
    });
    const r = reader(redis.addr);
    const id = uniqueName('k');
    const started = Date.now();
    const { stdout } = await run(PYTHON, [SCRIPT, 'abandon', `tcp://127.0.0.1:${a.port}`, id, TEST_IMAGE_LANG], { timeout: 60_000 });
    expect(JSON.parse(stdout)).to.deep.equal({ outcome: 'timeout' }); // the create is slower than 3 s (a bootstrap of 8 s)
    const ended = await s.next('kernel_terminated', started, 90_000);
    const hash = await r.hgetall(id); // as the 2018 manager reads it when kernel_terminated arrives
    expect(ended.args.slice(0, 2)).to.deep.equal([id, 'create-abandoned']);
    for (const f of FIELDS) expect(hash[f], f).to.equal(String((ended.args[2] as Record<string, number>)[f]));
    expect(await r.ttl(id)).to.be.within(1, 30);
    expect(await kernelIds(a.client)).to.not.include(id);
    await eventually('no container left', async () => (await containersOf(a.agentId)).length === 0 || undefined, 20_000);
    expect(s.events.filter((e) => e.name === 'kernel_started').map((e) => e.args[0])).to.include(id); // it was made, then given back
  });
});
