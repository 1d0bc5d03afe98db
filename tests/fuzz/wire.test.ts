/**
 * Property-based fuzzing (fast-check) of the codec, the frame parser and the
 * dispatcher, without a socket. Short by default; FUZZ_RUNS=10000 runs more.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { silentLogger } from '../../src/log.js';
import { Dispatcher, implement, type Binding } from '../../src/rpc/dispatcher.js';
import { methods } from '../../src/rpc/methods.js';
import { msgpackCodec } from '../../src/wire/codec.js';
import { parseRequestFrames, type MalformedRequest, type ParsedRequest } from '../../src/wire/frames.js';
import { encodeRequestHeader } from '../../src/wire/headers.js';
import { ParametersError } from '../../src/errors.js';
import {
  buildCallosumReply,
  buildCallosumRequest,
  isCallosumFrames,
  parseCallosumFrames,
  parseCallosumReply,
} from '../../src/wire/callosum.js';
import { modernCodec } from '../../src/wire/modern-codec.js';
import { readPickle } from '../../src/wire/pickle.js';
import { callosumFailure } from '../../src/rpc/callosum-failure.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const RUNS = Number(process.env.FUZZ_RUNS) || 300;
const opts = { numRuns: RUNS };

/** The value shapes of the wire: str, bin, ints (beyond 32 bits, negative), floats, nil, bools, nested arrays and maps. */
const wireValue = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.string(),
    fc.fullUnicodeString(),
    fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
    fc.integer(),
    fc.maxSafeInteger(),
    fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
    fc.double({ noNaN: true }).filter((d) => !Object.is(d, -0)),
    fc.constant(null),
    fc.boolean(),
  ),
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, tie('leaf'), tie('array'), tie('map')),
  array: fc.array(tie('value'), { maxLength: 5 }),
  // msgpackr reads a key `__proto__` as `__proto_` (its guard against prototype pollution): not a round trip, by design.
  map: fc.dictionary(
    fc.string({ maxLength: 12 }).filter((k) => k !== '__proto__'),
    tie('value'),
    { maxKeys: 5 },
  ),
})).value;

const frame = fc.uint8Array({ maxLength: 48 }).map((a) => Buffer.from(a));

describe('fuzz: codec', () => {
  it('round-trips every wire value shape (str stays str, bin stays bin, big and negative ints stay ints)', () => {
    fc.assert(
      fc.property(wireValue, (v) => {
        const back = msgpackCodec.decode(msgpackCodec.encode(v));
        expect(back).to.deep.equal(v);
      }),
      opts,
    );
  });

  it('writes integers beyond 32 bits as msgpack ints, not floats', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: 2 ** 32, max: Number.MAX_SAFE_INTEGER }),
          fc.integer({ min: Number.MIN_SAFE_INTEGER, max: -(2 ** 31) - 1 }),
        ),
        (n) => {
          const bytes = msgpackCodec.encode(n);
          expect(bytes[0], `type byte of ${n}`).to.be.oneOf([0xcf, 0xd3]); // uint64 / int64, never 0xcb float64
          expect(msgpackCodec.decode(bytes)).to.equal(n);
        },
      ),
      opts,
    );
  });

  it('decodes arbitrary bytes to a value or a clean Error, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          msgpackCodec.decode(bytes);
        } catch (err) {
          expect(err).to.be.instanceOf(Error);
          expect((err as Error).message)
            .to.be.a('string')
            .and.not.equal('');
        }
      }),
      { numRuns: RUNS * 10 },
    );
  });
});

describe('fuzz: frame parsing and dispatch', () => {
  // every method of the contract, bound to a handler that echoes what it was given
  const bindings: Binding[] = Object.values(methods).map((def) => implement(def as never, ((...a: unknown[]) => a) as never));
  const dispatcher = new Dispatcher(bindings, silentLogger());
  const names = [...Object.keys(methods), ''];
  const methodName = fc.oneof(fc.constantFrom(...names), fc.string({ maxLength: 30 }), fc.fullUnicodeString({ maxLength: 10 }));

  /** Runs one frame set through parse and dispatch; returns how many replies it produced (0 for a documented drop). */
  async function replies(frames: Buffer[]): Promise<number> {
    const parsed = parseRequestFrames(frames, msgpackCodec);
    if (parsed.kind === 'drop') {
      expect(parsed.reason).to.be.a('string');
      return 0;
    }
    const reply = await dispatcher.handle(parsed as ParsedRequest | MalformedRequest);
    if (!reply.ok) {
      expect(reply.error.type).to.match(/^[\w.]+$/);
      expect(reply.error.repr).to.be.a('string');
    }
    msgpackCodec.encode(reply.ok ? reply.value : [reply.error.type, reply.error.args, reply.error.repr]); // the reply can go out
    return 1;
  }

  it('answers arbitrary method names, args and kwargs exactly once and never throws', async () => {
    const header = encodeRequestHeader({ pid: 1, random: 2, requestId: 3, time: 0 });
    await fc.assert(
      fc.asyncProperty(
        methodName,
        fc.array(wireValue, { maxLength: 8 }),
        fc.dictionary(fc.string({ maxLength: 12 }), wireValue, { maxKeys: 4 }),
        async (m, args, kwargs) => {
          const frames = [Buffer.from('id'), header, Buffer.from(m), msgpackCodec.encode(args), msgpackCodec.encode(kwargs)];
          expect(await replies(frames)).to.equal(1);
        },
      ),
      opts,
    );
  });

  it('answers a set with a 16-byte header frame once and drops anything else, for arbitrary frame sets', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 8 }), fc.boolean(), async (frames, withHeader) => {
        const at = frames.length >= 5 ? frames.length - 4 : 1;
        if (withHeader && frames.length >= 2) frames[at] = Buffer.alloc(16, 7);
        const parseable = frames.length >= 2 && frames[at]!.length === 16;
        expect(await replies(frames)).to.equal(parseable ? 1 : 0);
      }),
      { numRuns: RUNS * 5 },
    );
  });
});

describe('fuzz: Callosum framing, the modern codec and the pickle reader', () => {
  const bindings: Binding[] = Object.values(methods).map((def) => implement(def as never, ((...a: unknown[]) => a) as never));
  const dispatcher = new Dispatcher(bindings, silentLogger());
  const id = Buffer.from('id');
  const here = path.dirname(fileURLToPath(import.meta.url));
  const pickles = Object.values(
    (
      JSON.parse(readFileSync(path.join(here, '../../../tests/fixtures/modern-values.json'), 'utf8')) as {
        pickles: Record<string, string>;
      }
    ).pickles,
  ).map((h) => Buffer.from(h, 'hex'));

  /** What the ROUTER does with a frame set on the Callosum path: 0 replies for a drop or a cancel, else 1, checked to read back. */
  async function callosumReplies(frames: Buffer[]): Promise<number> {
    const parsed = parseCallosumFrames(frames, msgpackCodec, modernCodec);
    if (parsed.kind === 'drop' || parsed.kind === 'cancel') return 0;
    if (parsed.kind === 'ping') return 1;
    const reply = await dispatcher.handle(parsed);
    const out = buildCallosumReply(
      parsed,
      msgpackCodec,
      reply.ok ? { ok: true, payload: modernCodec.encode(reply.value) } : { ok: false, ...callosumFailure(reply.error) },
    );
    const back = parseCallosumReply(out.slice(1), msgpackCodec);
    expect(back, 'the reply reads back').to.not.equal(undefined);
    expect(back!.header.seq).to.deep.equal(parsed.header.seq);
    expect(back!.header.okey).to.deep.equal(parsed.header.okey);
    return 1;
  }

  it('never takes a frame set aiozmq would answer for a Callosum one, for arbitrary frame sets', () => {
    fc.assert(
      fc.property(fc.array(frame, { minLength: 1, maxLength: 6 }), fc.constantFrom('PING', 'UPPER', 'map', 'none'), (frames, shape) => {
        if (shape === 'PING' || shape === 'UPPER') frames[1] = Buffer.from(shape);
        if (shape === 'map' && frames.length > 1) frames[1] = Buffer.concat([Buffer.from([0x85]), frames[1]!]);
        if (isCallosumFrames(frames)) expect(parseRequestFrames(frames, msgpackCodec).kind).to.equal('drop');
      }),
      { numRuns: RUNS * 5 },
    );
  });

  it('answers arbitrary Callosum calls (both generations, str and bin okey) once, echoing seq and okey, and never throws', async () => {
    const methodName = fc.oneof(fc.constantFrom(...Object.keys(methods)), fc.string({ maxLength: 20 }));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('1.x' as const, '0.9' as const),
        methodName,
        fc.oneof(fc.constant(''), fc.constant(Buffer.alloc(0)), fc.string({ maxLength: 8 })),
        fc.oneof(fc.integer({ min: 0, max: 2 ** 31 }), fc.maxSafeInteger()),
        fc.array(wireValue, { maxLength: 6 }),
        fc.dictionary(fc.string({ maxLength: 12 }), wireValue, { maxKeys: 3 }),
        async (generation, m, okey, seq, args, kwargs) => {
          const frames = [id, ...buildCallosumRequest(generation, msgpackCodec, { method: m, okey, seq, args, kwargs })];
          expect(isCallosumFrames(frames)).to.equal(true);
          expect(await callosumReplies(frames)).to.equal(1);
        },
      ),
      opts,
    );
  });

  it('drops or answers arbitrary and damaged Callosum frame sets, never throwing', async () => {
    const good = buildCallosumRequest('1.x', msgpackCodec, { method: 'ping', okey: '', seq: 1, args: ['x'] });
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: 2 }), frame, fc.nat({ max: 64 }), async (which, junk, cut) => {
        const frames = [id, ...good];
        const target = 1 + which;
        frames[target] = which === 0 ? frames[target]! : Buffer.concat([frames[target]!.subarray(0, cut), junk]);
        if (!isCallosumFrames(frames)) return;
        expect(await callosumReplies(frames)).to.be.oneOf([0, 1]);
      }),
      { numRuns: RUNS * 5 },
    );
  });

  it('reads arbitrary bytes and damaged real pickles to a value or a ParametersError, nothing else', () => {
    const damaged = fc.tuple(fc.constantFrom(...pickles), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([p, at, b]) => {
      const copy = Buffer.from(p);
      copy[at % copy.length] = b;
      return copy;
    });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), damaged), (bytes) => {
        try {
          readPickle(bytes);
        } catch (err) {
          expect(err).to.be.instanceOf(ParametersError);
        }
      }),
      { numRuns: RUNS * 10 },
    );
  });
});
