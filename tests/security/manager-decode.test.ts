/**
 * A manager's hostile arguments against a real agent process (the CLI, the
 * real etcd, ZeroMQ): the 117-byte pickle of issue 27 in a Callosum call, and
 * msgpack that makes millions of values or nests 100,000 deep in an aiozmq
 * call, are each refused with a ParametersError at once; the agent's peak
 * RSS stays where it was, and it keeps answering pings and reading real
 * pickles (docs/security-manager-input.txt).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { methods } from '../../src/rpc/methods.js';
import { AgentClient } from '../../src/rpc/client.js';
import { msgpackCodec } from '../../src/wire/codec.js';
import { buildCallosumRequest, CALLOSUM_PING, parseCallosumReply } from '../../src/wire/callosum.js';
import { decodeReplyHeader, encodeRequestHeader } from '../../src/wire/headers.js';
import { freePort, loopbackAgentFlags, onCleanup, REPO_ROOT, requireEtcd, spawnAgent, testEtcd, uniqueName } from '../helpers/env.js';
import { packWithExt, RawExt } from '../helpers/modern-manager.js';
import { dagPickle } from './decode-grammar.js';

/** A process's peak resident set (VmHWM), in bytes. */
function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/** Most a refusal may take over the wire, on a loaded machine (the decode itself is under 10 ms: decode-fuzz.test.ts). */
const REPLY_MS = 2000;
/** Most the agent's peak RSS may grow while it refuses (the 117-byte pickle took it to 5.6 GiB before). */
const RSS_GROWTH = 64 * 1024 * 1024;

describe('security: a manager cannot sink a real agent with a small request', function () {
  this.timeout(90_000);
  before(requireEtcd);

  it('refuses the 117-byte pickle and msgpack of millions of values with a ParametersError at once, and keeps answering', async () => {
    const namespace = uniqueName('test');
    testEtcd(namespace);
    const port = await freePort();
    const proc = spawnAgent(await loopbackAgentFlags({ namespace, agentId: uniqueName('i-test'), port }));
    await proc.waitFor(/"message":"agent running"/, 30_000);
    const endpoint = `tcp://127.0.0.1:${port}`;
    const dealer = new zmq.Dealer({ linger: 0, receiveTimeout: 30_000 });
    onCleanup(() => dealer.close());
    dealer.connect(endpoint);
    const exchange = async (frames: Buffer[]) => {
      await dealer.send(frames);
      return dealer.receive();
    };
    expect((await exchange([...CALLOSUM_PING]))[0]!.toString()).to.equal('PONG');
    const client = new AgentClient(endpoint, { timeoutMs: 10_000 });
    onCleanup(() => client.close());
    expect(await client.call(methods.ping, 'before')).to.equal('before');
    const rss0 = peakRss(proc.child.pid!);

    const call = async (seq: number, ext: RawExt) => {
      const packed = packWithExt({ args: [ext], kwargs: {} });
      const t0 = performance.now();
      const frames = await exchange(buildCallosumRequest('1.x', msgpackCodec, { method: 'ping', okey: '', seq, args: [], packed }));
      const ms = performance.now() - t0;
      const reply = parseCallosumReply(frames, msgpackCodec)!;
      expect(reply.header.seq).to.equal(seq);
      return { ms, result: reply.result };
    };
    const bomb = dagPickle(28);
    expect(bomb.length).to.equal(117);
    const ms: number[] = [];
    for (let seq = 1; seq <= 10; seq++) {
      const { ms: t, result } = await call(seq, new RawExt(3, bomb));
      ms.push(t);
      expect(result.ok === false && result.name).to.equal('ParametersError');
      expect(result.ok === false && result.repr).to.match(/ext type 3 \(DECIMAL\): reading it would make more than \d+ values/);
      expect(await client.call(methods.ping, `after ${seq}`)).to.equal(`after ${seq}`);
    }
    ms.sort((a, b) => a - b);
    console.log(
      `      the 117-byte pickle over Callosum: refused in ${ms[5]!.toFixed(1)} ms (median of 10 round trips), slowest ${ms[9]!.toFixed(1)}`,
    );
    expect(ms[9]).to.be.below(REPLY_MS);

    // a real pickle still reads: Decimal("1.5") as ping's str
    const fixtures = JSON.parse(readFileSync(path.join(REPO_ROOT, 'tests/fixtures/modern-values.json'), 'utf8')) as {
      pickles: Record<string, string>;
    };
    const decimal = await call(11, new RawExt(3, Buffer.from(fixtures.pickles.decimal!, 'hex')));
    expect(decimal.result).to.deep.equal({ ok: true, value: '1.5' });

    // aiozmq: an args frame of 2,000,000 empty arrays (2 MB), one nested 100,000 deep, one announcing 2^32 - 1 items
    const wide = Buffer.alloc(5 + 2_000_000, 0x90);
    wide[0] = 0xdd;
    wide.writeUInt32BE(2_000_000, 1);
    const bad: Array<[Buffer, RegExp]> = [
      [wide, /args frame is not valid msgpack \(msgpack: reading it would make more than 1000000 values/],
      [
        Buffer.concat([Buffer.alloc(100_000, 0x91), Buffer.from([0xc0])]),
        /args frame is not valid msgpack \(msgpack nests deeper than 100 levels/,
      ],
      [
        Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0x90]),
        /args frame is not valid msgpack \(msgpack announces 4294967295 values in the 1 bytes left/,
      ],
    ];
    for (const [i, [args, why]] of bad.entries()) {
      const t0 = performance.now();
      const [h, payload] = await exchange([
        encodeRequestHeader({ pid: 1, random: 2, requestId: 100 + i, time: 0 }),
        Buffer.from('ping'),
        args,
        msgpackCodec.encode({}),
      ]);
      const t = performance.now() - t0;
      expect(decodeReplyHeader(h!)).to.include({ requestId: 100 + i, isError: true });
      const [type, , repr] = msgpackCodec.decode(payload!) as [string, unknown, string];
      expect(type).to.equal('aiozmq.rpc.base.ParametersError');
      expect(repr).to.match(why);
      expect(t, `${why.source}: ${t.toFixed(0)} ms`).to.be.below(REPLY_MS);
    }

    expect(await client.call(methods.ping, 'alive')).to.equal('alive');
    expect((await exchange([...CALLOSUM_PING]))[0]!.toString()).to.equal('PONG');
    const grew = peakRss(proc.child.pid!) - rss0;
    console.log(`      the agent's peak RSS grew by ${(grew / 2 ** 20).toFixed(1)} MiB`);
    expect(grew).to.be.below(RSS_GROWTH);
    expect(proc.child.exitCode).to.equal(null);
  });
});
