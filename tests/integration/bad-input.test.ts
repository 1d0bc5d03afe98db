/**
 * Malformed input never crashes or stalls the agent: a burst of random and
 * broken frame sets from a raw DEALER, then the agent still answers, and
 * every request whose header parsed got exactly one reply.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { methods } from '../../src/rpc/methods.js';
import { msgpackCodec } from '../../src/wire/codec.js';
import { decodeReplyHeader, encodeRequestHeader } from '../../src/wire/headers.js';
import { eventually, onCleanup, requireEtcd, startAgent } from '../helpers/env.js';

function rand(n: number): number {
  return Math.floor(Math.random() * n);
}

describe('malformed input', () => {
  before(requireEtcd);

  it('survives a burst of garbage and answers every request with a parseable header once', async () => {
    const { client, port, agent } = await startAgent();
    const dealer = new zmq.Dealer({ linger: 0, sendHighWaterMark: 100_000 });
    dealer.connect(`tcp://127.0.0.1:${port}`);
    onCleanup(() => dealer.close());
    const replies = new Map<number, number>();
    void (async () => {
      try {
        for await (const [h] of dealer) {
          const header = decodeReplyHeader(h!);
          if (header) replies.set(header.requestId, (replies.get(header.requestId) ?? 0) + 1);
        }
      } catch {
        // closed
      }
    })();

    const header = (id: number) => encodeRequestHeader({ pid: 1, random: 2, requestId: id, time: 0 });
    const expectReply = new Set<number>();
    let id = 0;
    const kinds = [
      () => Array.from({ length: 1 + rand(6) }, () => randomBytes(rand(64))), // random bytes, 1..6 frames
      () => [randomBytes(rand(16)), Buffer.from('ping'), msgpackCodec.encode(['x']), msgpackCodec.encode({})], // truncated header
      () => {
        expectReply.add(++id);
        return [header(id), Buffer.from('ping'), Buffer.from([0x92, 0xa1]), msgpackCodec.encode({})]; // invalid msgpack
      },
      () => {
        expectReply.add(++id);
        return [header(id), Buffer.from('ping'), msgpackCodec.encode({ not: 'a list' }), msgpackCodec.encode({})];
      },
      () => {
        expectReply.add(++id);
        return [header(id), randomBytes(8), randomBytes(rand(32)), randomBytes(rand(32))]; // random body
      },
      () => {
        expectReply.add(++id);
        return [header(id), Buffer.from('ping')]; // too few frames, valid header
      },
      () => {
        expectReply.add(++id);
        return [
          header(id),
          Buffer.from('ping'),
          msgpackCodec.encode([randomBytes(4 * 1024 * 1024).toString('latin1')]),
          msgpackCodec.encode({}),
        ]; // huge
      },
      () => {
        expectReply.add(++id);
        return [header(id), Buffer.from('execute'), msgpackCodec.encode([99, 'k', null, 'query', 'x', {}]), msgpackCodec.encode({})];
      },
    ];
    for (let i = 0; i < 3000; i++) {
      const kind = i % 100 === 0 ? kinds[6]! : kinds[rand(kinds.length - 1) === 5 ? 7 : rand(6)]!;
      await dealer.send(kind());
    }
    expect(await client.call(methods.ping, 'alive')).to.equal('alive');
    await eventually('a reply to every request with a parseable header', () => [...expectReply].every((r) => replies.has(r)), 20_000);
    for (const [rid, count] of replies) expect(count, `replies to request ${rid}`).to.equal(1);
    const stats = agent.stats().rpc!;
    expect(stats.dropped).to.be.above(0);
    expect(stats.inFlight).to.equal(0);
  });
});
