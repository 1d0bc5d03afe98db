/**
 * A flood of malformed and random frame sets through a raw DEALER at a
 * running agent, counting the replies per request id. Four kinds, in turn:
 * random junk frames, truncated headers, valid headers with junk payloads,
 * and valid calls (ping, unknown methods, bad arguments).
 *
 * A frame set "has a parseable header" exactly when the router's parser finds
 * a 16-byte frame where the header goes (4th from the end, or the first frame
 * of a set shorter than 4). Every such set gets a fresh request id written
 * into that frame, so each id is expected exactly once; junk that happens to
 * be 16 bytes long at that place is expected to be answered too.
 */
import { randomBytes } from 'node:crypto';
import * as zmq from 'zeromq';
import { msgpackCodec } from '../../src/wire/codec.js';
import { decodeReplyHeader, encodeRequestHeader, REQUEST_HEADER_SIZE } from '../../src/wire/headers.js';
import { waitRealTime } from '../helpers/real-time.js';

/** What a flood counted. */
export interface FloodResult {
  sent: number;
  expected: number;
  answered: number;
  /** Ids answered more than once. */
  duplicates: number;
  /** Replies for ids that were never expected. */
  unexpected: number;
  /** Expected ids with no reply at the end. */
  missing: number;
  byKind: Record<string, number>;
  ms: number;
}

/** A small deterministic PRNG (mulberry32), so a failing flood can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KINDS = ['junk', 'truncated-header', 'junk-payload', 'valid-call'] as const;

function frameSet(kind: (typeof KINDS)[number], rnd: () => number): Buffer[] {
  const int = (n: number) => Math.floor(rnd() * n);
  const bytes = (n: number): Buffer => randomBytes(n);
  const header = () => encodeRequestHeader({ pid: int(0x10000), random: int(0x10000), requestId: 0, time: Date.now() / 1000 });
  switch (kind) {
    case 'junk':
      return Array.from({ length: 1 + int(7) }, () => bytes(int(40)));
    case 'truncated-header':
      return [header().subarray(0, int(REQUEST_HEADER_SIZE)), ...Array.from({ length: int(4) }, () => bytes(int(20)))];
    case 'junk-payload': {
      const junk: Buffer[] = [bytes(int(30)), bytes(int(30)), bytes(int(30))];
      // sometimes valid msgpack of the wrong shape, sometimes a valid method name with junk args
      if (int(3) === 0) junk[1] = msgpackCodec.encode(int(2) ? 'x' : 42);
      if (int(3) === 0) junk[0] = Buffer.from('ping');
      return [header(), ...junk];
    }
    case 'valid-call': {
      const calls: Array<[string, unknown[], Record<string, unknown>]> = [
        ['ping', ['hi'], {}],
        ['ping', [], { msg: 'kw' }],
        [`no_such_${int(100)}`, [1, 'a'], {}],
        ['create_kernel', [123], { bogus: true }],
        ['destroy_kernel', ['../etc'], {}],
        ['execute', [2, 'no-such-kernel', null, 'query', 'print(1)', {}], {}],
      ];
      const [m, a, k] = calls[int(calls.length)]!;
      return [header(), Buffer.from(m), msgpackCodec.encode(a), msgpackCodec.encode(k)];
    }
  }
}

/** Where the router looks for the header in what a DEALER sent (docs/wire-contract.rst, "RPC"; the router adds the identity frame). */
function headerIndex(frames: Buffer[]): number {
  return frames.length >= 4 ? frames.length - 4 : 0;
}

/** Sends `count` frame sets to `endpoint` and waits (up to `settleMs` after the last) for the replies. */
export async function flood(endpoint: string, count: number, seed = 1, settleMs = 30_000): Promise<FloodResult> {
  const rnd = prng(seed);
  const dealer = new zmq.Dealer({ linger: 0, sendHighWaterMark: 2000, receiveHighWaterMark: 0 });
  dealer.connect(endpoint);
  const replies = new Map<number, number>();
  const expected = new Set<number>();
  let unexpected = 0;
  let answered = 0;
  const waker: { wake: (() => void) | null } = { wake: null };
  const reader = (async () => {
    try {
      for await (const frames of dealer) {
        const h = decodeReplyHeader(frames[frames.length - 2] ?? Buffer.alloc(0));
        if (!h) continue;
        const n = (replies.get(h.requestId) ?? 0) + 1;
        replies.set(h.requestId, n);
        if (!expected.has(h.requestId)) unexpected++;
        else if (n === 1) answered++;
        waker.wake?.();
      }
    } catch {
      // closed
    }
  })();

  const started = Date.now();
  const byKind: Record<string, number> = {};
  let nextId = 1;
  for (let i = 0; i < count; i++) {
    const kind = KINDS[i % KINDS.length]!;
    const frames = frameSet(kind, rnd);
    if (frames.length === 0) frames.push(Buffer.alloc(0));
    const at = headerIndex(frames);
    if (frames[at]!.length === REQUEST_HEADER_SIZE) {
      frames[at] = Buffer.from(frames[at]!); // do not write into a shared pool
      frames[at]!.writeUInt32LE(nextId, 4);
      expected.add(nextId++);
    }
    byKind[kind] = (byKind[kind] ?? 0) + 1;
    await dealer.send(frames);
    // keep at most 500 answers outstanding, so the flood measures the agent, not its queues
    while (expected.size - answered > 500) await new Promise<void>((r) => ((waker.wake = r), setTimeout(r, 100)));
  }
  const deadline = Date.now() + settleMs;
  // woken by each answer; the timer only bounds the wait by the deadline
  while (answered < expected.size && Date.now() < deadline) {
    await new Promise<void>((r) => {
      const t = setTimeout(r, Math.max(0, deadline - Date.now()));
      waker.wake = () => (clearTimeout(t), r());
    });
  }
  await waitRealTime(200, 'a window for late duplicate replies to show up');
  dealer.close();
  await reader;
  let duplicates = 0;
  for (const n of replies.values()) if (n > 1) duplicates++;
  return {
    sent: count,
    expected: expected.size,
    answered,
    duplicates,
    unexpected,
    missing: expected.size - answered,
    byKind,
    ms: Date.now() - started,
  };
}
