/**
 * A manager's input is bounded in total work (docs/security-manager-input.txt,
 * docs/wire-contract.rst "RPC"): the pickle reader and the msgpack decode of a
 * request, fed hostile input from a grammar (tests/security/decode-grammar.ts:
 * memo-shared values, deep nesting, huge announced counts, ext inside ext,
 * random opcodes), answer every case with a value or a clear error, in
 * bounded time and memory. The seed is printed; DECODE_FUZZ_SEED=<seed>
 * makes the same cases again, DECODE_FUZZ_CASES=<n> more of them.
 */
import { expect } from 'chai';
import v8 from 'node:v8';
import vm from 'node:vm';
import { ParametersError } from '../../src/errors.js';
import { msgpackCodec } from '../../src/wire/codec.js';
import { DecodeBudget, MAX_DECODE_DEPTH, MAX_DECODE_WORK } from '../../src/wire/decode-bounds.js';
import { modernCodec } from '../../src/wire/modern-codec.js';
import { MAX_PICKLE_WORK, MAX_REQUEST_PICKLE_WORK, readPickle } from '../../src/wire/pickle.js';
import { buildCallosumRequest, parseCallosumFrames } from '../../src/wire/callosum.js';
import { parseRequestFrames } from '../../src/wire/frames.js';
import { encodeRequestHeader } from '../../src/wire/headers.js';
import { dagPickle, genMsgpack, genPickle, Rand } from './decode-grammar.js';

const SEED = Number(process.env.DECODE_FUZZ_SEED) || Math.floor(Math.random() * 2 ** 31);
const CASES = Number(process.env.DECODE_FUZZ_CASES) || 1500;
/** Most one decode may take: generous for a loaded machine; an unbounded one takes seconds to minutes. */
const CASE_MS = 250;
/** Most the heap may grow during a batch (garbage included), and keep after it. */
const PEAK_GROWTH = 256 * 1024 * 1024;
const KEPT_GROWTH = 16 * 1024 * 1024;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Counts a decoded value's nodes and depth, and fails if any object is met twice (what comes out must be a tree). */
function shape(v: unknown, seen = new Set<object>(), depth = 0): { nodes: number; depth: number } {
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return { nodes: 1, depth };
  if (seen.has(v)) expect.fail('an object met twice in the result: a decode must give a tree');
  seen.add(v);
  let nodes = 1;
  let deepest = depth;
  for (const x of Array.isArray(v) ? v : Object.values(v)) {
    const s = shape(x, seen, depth + 1);
    nodes += s.nodes;
    deepest = Math.max(deepest, s.depth);
  }
  return { nodes, depth: deepest };
}

/** What a decode gave: its value, or what it threw. */
type Outcome = { ok: true; value: unknown } | { ok: false; err: unknown };

/**
 * Runs `cases` cases of `one` with the heap watched; `one` runs each decode
 * through `decode`, which times it against CASE_MS. Returns decodes per second.
 */
function batch(name: string, cases: number, one: (i: number, r: Rand, decode: (fn: () => unknown) => Outcome) => void): number {
  gc();
  const base = process.memoryUsage().heapUsed;
  let peak = base;
  let slowest = 0;
  let decodes = 0;
  let spent = 0;
  for (let i = 0; i < cases; i++) {
    one(i, new Rand(SEED + i), (fn) => {
      const c0 = performance.now();
      let outcome: Outcome;
      try {
        outcome = { ok: true, value: fn() };
      } catch (err) {
        outcome = { ok: false, err };
      }
      const ms = performance.now() - c0;
      decodes += 1;
      spent += ms;
      slowest = Math.max(slowest, ms);
      expect(ms, `${name} case ${i} of seed ${SEED} took ${ms.toFixed(1)} ms`).to.be.below(CASE_MS);
      return outcome;
    });
    peak = Math.max(peak, process.memoryUsage().heapUsed);
  }
  const perSecond = decodes / (spent / 1000);
  gc();
  const kept = process.memoryUsage().heapUsed - base;
  console.log(
    `      ${name}: seed ${SEED}, ${cases} cases, ${decodes} decodes, ${perSecond.toFixed(0)} decodes/s, slowest ${slowest.toFixed(1)} ms, heap peak +${((peak - base) / 2 ** 20).toFixed(0)} MiB, kept ${(kept / 2 ** 20).toFixed(1)} MiB`,
  );
  expect(peak - base, `heap growth during the batch (seed ${SEED})`).to.be.below(PEAK_GROWTH);
  expect(kept, `heap kept after the batch (seed ${SEED})`).to.be.below(KEPT_GROWTH);
  return perSecond;
}

/** An error of a decode: a clean Error with a message, never a stack overflow. */
function expectClean(err: unknown, where: string): void {
  expect(err, where).to.be.instanceOf(Error);
  expect((err as Error).message, where)
    .to.be.a('string')
    .and.not.equal('');
  expect((err as Error).message, where).to.not.match(/call stack|heap/i);
}

describe('security: a manager cannot make the agent decode without bound', function () {
  this.timeout(120_000);
  before(() => console.log(`      decode fuzz seed ${SEED} (DECODE_FUZZ_SEED=${SEED} makes these cases again)`));

  it('refuses the 117-byte memo-shared pickle (2^28 values) with a ParametersError in under 10 ms', () => {
    const bomb = dagPickle(28);
    expect(bomb.length).to.equal(117);
    const ms: number[] = [];
    for (let i = 0; i < 21; i++) {
      const t0 = performance.now();
      expect(() => readPickle(bomb, 'ext type 3 (DECIMAL)')).to.throw(ParametersError, new RegExp(`more than ${MAX_PICKLE_WORK} values`));
      ms.push(performance.now() - t0);
    }
    ms.sort((a, b) => a - b);
    console.log(`      refused in ${ms[10]!.toFixed(2)} ms (median of 21; first ${ms[0]!.toFixed(2)}, slowest ${ms[20]!.toFixed(2)})`);
    expect(ms[10]).to.be.below(10);
    // and inside a Callosum call, with the request's budget
    const frames = buildCallosumRequest('1.x', msgpackCodec, {
      method: 'ping',
      okey: '',
      seq: 1,
      args: [],
      packed: Buffer.concat([
        Buffer.from([0x82, 0xa4, ...Buffer.from('args'), 0x91, 0xc7, bomb.length, 3]),
        bomb,
        Buffer.from([0xa6, ...Buffer.from('kwargs'), 0x80]),
      ]),
    });
    const parsed = parseCallosumFrames([Buffer.from('id'), ...frames], msgpackCodec, modernCodec);
    expect(parsed.kind).to.equal('malformed');
    expect(parsed.kind === 'malformed' && parsed.reason).to.match(/ext type 3 \(DECIMAL\).*more than \d+ values/);
  });

  it('reads memo sharing within the bound as a tree of copies, and refuses a list that holds itself', () => {
    const v = readPickle(dagPickle(8)); // 2^9 - 1 values
    const s = shape(v);
    expect(s.nodes).to.equal(2 ** 9 - 1);
    expect(s.depth).to.equal(8);
    for (const levels of [12, 20, 28, 40, 300]) expect(() => readPickle(dagPickle(levels)), `${levels} levels`).to.throw(ParametersError);
    const selfList = Buffer.from([0x80, 4, 0x5d, 0x94, 0x68, 0, 0x61, 0x2e]); // l = []; l.append(l)
    expect(() => readPickle(selfList)).to.throw(ParametersError, /nests deeper than 100 levels \(or holds itself\)/);
  });

  it('bounds one request, not only one pickle: many pickles each within the bound are refused together', () => {
    const fits = dagPickle(10); // 2^11 - 1 values copied and 35 opcodes: about half a pickle's bound
    expect(shape(readPickle(fits)).nodes).to.equal(2 ** 11 - 1);
    expect(() => readPickle(dagPickle(11))).to.throw(ParametersError); // 2^12 - 1 values and its opcodes: over
    const list = (n: number) =>
      Buffer.concat([
        Buffer.from([0xdc, n >> 8, n & 0xff]),
        ...Array.from({ length: n }, () => Buffer.from([0xc7, fits.length, 3, ...fits])),
      ]);
    const n = 1000; // 1000 x ~2,080 units: eight times what the pickles of one request may take
    const t0 = performance.now();
    expect(() => modernCodec.decode(list(n), new DecodeBudget())).to.throw(
      ParametersError,
      new RegExp(`more than ${MAX_REQUEST_PICKLE_WORK} values`),
    );
    console.log(`      ${n} pickles of ${fits.length} bytes each in one request: refused in ${(performance.now() - t0).toFixed(0)} ms`);
    expect(modernCodec.decode(list(100), new DecodeBudget())).to.have.length(100);
  });

  it('refuses msgpack that announces more than its bytes hold, nests too deep, or makes too many values, and reads the largest real request', () => {
    const budget = () => new DecodeBudget();
    for (const b of [
      [0xdd, 0xff, 0xff, 0xff, 0xff, 0x90],
      [0xdf, 0xff, 0xff, 0xff, 0xff, 0x90, 0x90],
      [0xdc, 0xff, 0xff],
    ])
      expect(() => msgpackCodec.decode(Buffer.from(b), budget())).to.throw(ParametersError, /announces/);
    expect(() => msgpackCodec.decode(Buffer.alloc(100_000, 0x91), budget())).to.throw(ParametersError, /deeper than 100/);
    expect(msgpackCodec.decode(Buffer.concat([Buffer.alloc(MAX_DECODE_DEPTH, 0x91), Buffer.from([0xc0])]), budget())).to.be.an('array');
    const wide = Buffer.alloc(5 + 2_000_000, 0x90);
    wide[0] = 0xdd;
    wide.writeUInt32BE(2_000_000, 1);
    const t0 = performance.now();
    expect(() => msgpackCodec.decode(wide, budget())).to.throw(ParametersError, /more than 1000000 values/);
    console.log(`      2,000,000 empty arrays in 2 MB: refused in ${(performance.now() - t0).toFixed(0)} ms`);
    // destroy_kernels' most: 100,000 kernel-session pairs
    const pairs = Array.from({ length: 100_000 }, (_, i) => [`k${i}`, `s${i}`]);
    expect(msgpackCodec.decode(msgpackCodec.encode([pairs]), budget())).to.deep.equal([pairs]);
    // without a budget (a client reading a reply) nothing changes
    expect(() => msgpackCodec.decode(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0x90]))).to.throw(Error, /Unexpected end/);
  });

  it(`answers every pickle of the grammar with a value or a ParametersError, in bounded time and memory`, () => {
    let values = 0;
    const perSecond = batch('pickles', CASES, (i, r, decode) => {
      const bytes = genPickle(r);
      const where = `case ${i} of seed ${SEED}: ${bytes.subarray(0, 200).toString('hex')}`;
      const out = decode(() => readPickle(bytes, 'fuzz'));
      if (!out.ok) return void expect(out.err, where).to.be.instanceOf(ParametersError);
      const s = shape(out.value);
      expect(s.nodes, where).to.be.at.most(MAX_PICKLE_WORK);
      expect(s.depth, where).to.be.at.most(MAX_DECODE_DEPTH);
      values += 1;
    });
    expect(values, 'cases that read to a value').to.be.above(CASES / 20);
    expect(perSecond).to.be.above(0);
  });

  it('answers every msgpack value of the grammar, as a body, an aiozmq request and a Callosum call, in bounded time and memory', () => {
    let values = 0;
    const header = encodeRequestHeader({ pid: 1, random: 2, requestId: 3, time: 0 });
    batch('msgpack', CASES, (i, r, decode) => {
      const bytes = genMsgpack(r);
      const where = `case ${i} of seed ${SEED}: ${bytes.subarray(0, 200).toString('hex')}`;
      for (const codec of [msgpackCodec, modernCodec]) {
        const out = decode(() => codec.decode(bytes, new DecodeBudget()));
        if (!out.ok) {
          expectClean(out.err, where);
          continue;
        }
        const s = shape(out.value);
        expect(s.nodes, where).to.be.at.most(MAX_DECODE_WORK);
        // A pickle (the modern codec's ext values) nests up to the bound again below the msgpack it sits in.
        expect(s.depth, where).to.be.at.most(codec === modernCodec ? 2 * MAX_DECODE_DEPTH : MAX_DECODE_DEPTH);
        values += 1;
      }
      // the whole request, as the ROUTER parses it: never a throw, a request or a ParametersError reply
      const aiozmq = decode(() =>
        parseRequestFrames([Buffer.from('id'), header, Buffer.from('ping'), bytes, Buffer.from([0x80])], msgpackCodec),
      );
      expect(aiozmq.ok && (aiozmq.value as { kind: string }).kind, where).to.be.oneOf(['request', 'malformed']);
      const call = buildCallosumRequest('1.x', msgpackCodec, { method: 'ping', okey: '', seq: i, args: [], packed: bytes });
      const callosum = decode(() => parseCallosumFrames([Buffer.from('id'), ...call], msgpackCodec, modernCodec));
      expect(callosum.ok && (callosum.value as { kind: string }).kind, where).to.be.oneOf(['request', 'malformed']);
    });
    expect(values, 'decodes that read to a value').to.be.above(CASES / 20);
  });
});
