/**
 * The Callosum framing and the modern codec without a socket: the detection
 * table of docs/modern-managers.rst, requests and replies of both generations,
 * and the restricted pickle reader against pickles made by real Python
 * (tests/fixtures/modern-values.json, from tests/interop/modern_fixtures.py).
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compressSync } from 'snappy';
import { ParametersError } from '../../src/errors.js';
import { msgpackCodec } from '../../src/wire/codec.js';
import {
  buildCallosumReply,
  buildCallosumRequest,
  CALLOSUM_PING,
  isCallosumFrames,
  parseCallosumFrames,
  parseCallosumReply,
} from '../../src/wire/callosum.js';
import { modernCodec } from '../../src/wire/modern-codec.js';
import { readPickle } from '../../src/wire/pickle.js';
import { readTemporenc } from '../../src/wire/temporenc.js';
import { callosumFailure } from '../../src/rpc/callosum-failure.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = JSON.parse(readFileSync(path.join(here, '../../../tests/fixtures/modern-values.json'), 'utf8')) as {
  pickles: Record<string, string>;
  bodies: Record<string, string>;
};
const hex = (s: string) => Buffer.from(s, 'hex');
const id = Buffer.from('peer-1');
const KID = '0b6e9c2e-5a3c-4d1e-9f0a-1c2d3e4f5a6b';
const SID = '9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a';

/** A pickle Python 3.11.7 wrote for a StrEnum member (by value, not by name as Debian's 3.11.2 and 3.12 do). */
const ENUM_BY_VALUE =
  '80059550000000000000008c1861692e6261636b656e642e636f6d6d6f6e2e6576656e7473948c1a4b65726e656c4c6966656379636c654576656e74526561736f6e9493948c0e757365722d72657175657374656494859452942e';

describe('callosum: restricted pickle reader', () => {
  it('reads the pickles of a 24.09 manager into plain values', () => {
    const p = fixtures.pickles;
    expect(readPickle(hex(p.decimal!))).to.equal('1.5');
    expect(readPickle(hex(p.enum_reason!))).to.equal('user-requested');
    expect(readPickle(hex(ENUM_BY_VALUE))).to.equal('user-requested');
    expect(readPickle(hex(p.image_ref!))).to.deep.equal({
      name: 'python',
      project: 'lablup',
      tag: '3-debian',
      registry: 'index.docker.io',
      architecture: 'x86_64',
      is_local: false,
    });
    expect(readPickle(hex(p.resource_slot!))).to.deep.equal({ cpu: '1', mem: '268435456' });
    expect(readPickle(hex(p.binary_size!))).to.equal(2 ** 40);
  });

  it('refuses a foreign global (os.system) and an unknown opcode with a ParametersError, building nothing', () => {
    expect(() => readPickle(hex(fixtures.pickles.foreign_global!))).to.throw(
      ParametersError,
      /global "posix.system" is not one this agent expects/,
    );
    // protocol 0 uses GLOBAL (0x63), which names its global in text: refused as an opcode
    expect(() => readPickle(hex(fixtures.pickles.protocol_0!))).to.throw(ParametersError, /opcode 0x63/);
    const withInst = Buffer.concat([hex('8005'), Buffer.from([0x69]), Buffer.from('os\nsystem\n')]);
    expect(() => readPickle(withInst)).to.throw(ParametersError, /opcode 0x69/);
  });

  it('refuses getattr on anything but an allowed enum, and truncated or trailing data', () => {
    // getattr(decimal.Decimal, "X")
    const p = hex('80058c086275696c74696e73948c0767657461747472949394' + '8c07646563696d616c8c07446563696d616c93' + '8c015886' + '522e');
    expect(() => readPickle(p)).to.throw(ParametersError, /getattr is read only as an enum member/);
    const good = hex(fixtures.pickles.decimal!);
    expect(() => readPickle(good.subarray(0, good.length - 3))).to.throw(ParametersError, /truncated|underflows/);
    expect(() => readPickle(Buffer.concat([good, Buffer.from([0x4e])]))).to.throw(ParametersError, /after STOP/);
  });
});

describe('callosum: modern codec', () => {
  it('reads ext types in arguments: UUID (also as a map key), Enum, ImageRef, Decimal, BinarySize', () => {
    expect(modernCodec.decode(hex(fixtures.bodies.destroy_kernel!))).to.deep.equal({ args: [KID, SID, 'user-requested'], kwargs: {} });
    const v = modernCodec.decode(hex(fixtures.bodies.image_refs!)) as { args: [Record<string, unknown>]; kwargs: Record<string, unknown> };
    expect(Object.keys(v.args[0])).to.deep.equal([KID]);
    expect(v.args[0][KID]).to.include({ name: 'python', tag: '3-debian' });
    expect(v.kwargs).to.deep.equal({ amount: '0.5', size: 1024, id: KID });
  });

  it('refuses a body that carries a pickle of a foreign global', () => {
    expect(() => modernCodec.decode(hex(fixtures.bodies.evil!))).to.throw(ParametersError, /posix.system/);
  });

  it('leaves the aiozmq codec as it was: a modern ext is an unknown extension there', () => {
    expect(() => msgpackCodec.decode(hex(fixtures.bodies.destroy_kernel!))).to.throw(/Unknown extension type 6/);
  });

  it('reads temporenc datetimes (DTSZ with microseconds, DT) as ISO strings', () => {
    // bit-pack: tag 111, precision 01 (us), D (12+4+5), T (5+6+6), 20 bits us, Z 7 bits, padding to 9 bytes
    const pack = (fields: Array<[number, number]>, bytes: number) => {
      let bits = '';
      for (const [v, n] of fields) bits += v.toString(2).padStart(n, '0');
      bits = bits.padEnd(bytes * 8, '0');
      return Buffer.from(bits.match(/.{8}/g)!.map((b) => parseInt(b, 2)));
    };
    const dtsz = pack(
      [
        [0b111, 3],
        [0b01, 2],
        [2024, 12],
        [8, 4],
        [14, 5],
        [13, 5],
        [5, 6],
        [59, 6],
        [123456, 20],
        [64, 7],
      ],
      9,
    );
    expect(readTemporenc(dtsz)).to.equal('2024-09-15T13:05:59.123456+00:00');
    const dt = pack(
      [
        [0b00, 2],
        [1999, 12],
        [11, 4],
        [30, 5],
        [23, 5],
        [59, 6],
        [0, 6],
      ],
      5,
    );
    expect(readTemporenc(dt)).to.equal('1999-12-31T23:59:00');
    expect(() => readTemporenc(dt.subarray(0, 4))).to.throw(ParametersError);
  });
});

describe('callosum: framing', () => {
  const upper = (call: Parameters<typeof buildCallosumRequest>[2]) => [id, ...buildCallosumRequest('1.x', msgpackCodec, call)];

  it("tells the generations apart per message (section 7's table)", () => {
    const aiozmqShort = [id, Buffer.alloc(16), Buffer.from('ping')]; // a short aiozmq set: its 16-byte header is not a map
    expect(isCallosumFrames([id, ...CALLOSUM_PING])).to.equal(true);
    expect(isCallosumFrames(upper({ method: 'ping', okey: '', seq: 1, args: ['x'] }))).to.equal(true);
    expect(
      isCallosumFrames([id, ...buildCallosumRequest('0.9', msgpackCodec, { method: 'ping', okey: '', seq: 1, args: ['x'] })]),
    ).to.equal(true);
    expect(isCallosumFrames(aiozmqShort)).to.equal(false);
    expect(isCallosumFrames([id, Buffer.from('NOPE'), Buffer.alloc(0), Buffer.alloc(0)])).to.equal(false);
    expect(isCallosumFrames([id, Buffer.from([0x85])])).to.equal(false);
  });

  it('answers the 1.x handshake with PONG and the two frames echoed', () => {
    const r = parseCallosumFrames([id, Buffer.from('PING'), Buffer.from('a'), Buffer.from('b')], msgpackCodec, modernCodec);
    expect(r.kind === 'ping' && r.reply.map((f) => f.toString())).to.deep.equal(['peer-1', 'PONG', 'a', 'b']);
  });

  it('parses 1.x and 0.9 calls, also zipped, and echoes meth, okey and seq in the msgpack types they came in', () => {
    for (const okey of ['', Buffer.alloc(0)]) {
      for (const generation of ['1.x', '0.9'] as const) {
        for (const zip of [undefined, (b: Buffer) => compressSync(b)]) {
          const frames = [
            id,
            ...buildCallosumRequest(generation, msgpackCodec, {
              method: 'execute',
              okey,
              seq: 7,
              args: [SID, KID],
              kwargs: { flush_timeout: 2 },
              zip,
            }),
          ];
          const r = parseCallosumFrames(frames, msgpackCodec, modernCodec);
          expect(r.kind).to.equal('request');
          if (r.kind !== 'request') return;
          expect(r).to.deep.include({ generation, method: 'execute', args: [SID, KID], kwargs: { flush_timeout: 2 } });
          const reply = buildCallosumReply(r, msgpackCodec, { ok: true, payload: msgpackCodec.encode({ status: 'finished' }) });
          expect(reply[0]).to.equal(id);
          const back = parseCallosumReply(reply.slice(1), msgpackCodec)!;
          expect(back.result).to.deep.equal({ ok: true, value: { status: 'finished' } });
          expect(back.header).to.deep.equal({ type: 2, meth: 'execute', okey, seq: 7 });
          // byte for byte: the echoed okey keeps its type (str a0 or bin c4 00)
          const raw = reply[reply.length - 2]!;
          expect(
            raw.includes(
              Buffer.from(typeof okey === 'string' ? [0xa4, 0x6f, 0x6b, 0x65, 0x79, 0xa0] : [0xa4, 0x6f, 0x6b, 0x65, 0x79, 0xc4, 0x00]),
            ),
          ).to.equal(true);
          expect(raw[0]).to.equal(0x85);
        }
      }
    }
  });

  it('answers failures with [name, repr, traceback] in meta, and an unknown method as a KeyError naming it', () => {
    const frames = upper({ method: 'no_such', okey: '', seq: 1, args: [] });
    const r = parseCallosumFrames(frames, msgpackCodec, modernCodec);
    if (r.kind !== 'request') throw new Error(r.kind);
    const failure = callosumFailure({ type: 'aiozmq.rpc.base.NotFoundError', args: ['no_such'], repr: "NotFoundError('no_such')" });
    const back = parseCallosumReply(buildCallosumReply(r, msgpackCodec, { ok: false, ...failure }).slice(1), msgpackCodec)!;
    expect(back.header.type).to.equal(3);
    expect(back.result.ok === false && back.result.name).to.equal('KeyError');
    expect(back.result.ok === false && back.result.repr).to.match(/no_such is not served/);
  });

  it('turns a bad body into a malformed call, a bad header into a drop, and a cancel into a cancel', () => {
    const good = upper({ method: 'ping', okey: '', seq: 3, args: ['x'] });
    const badBody = parseCallosumFrames([...good.slice(0, 3), Buffer.from([0xc1])], msgpackCodec, modernCodec);
    expect(badBody.kind).to.equal('malformed');
    const evilBody = msgpackCodec.encode({ meta: Buffer.alloc(0), body: hex(fixtures.bodies.evil!) });
    const evil = parseCallosumFrames([...good.slice(0, 3), evilBody], msgpackCodec, modernCodec);
    expect(evil.kind === 'malformed' && evil.reason).to.match(/posix\.system/);
    expect(parseCallosumFrames([id, good[1]!, Buffer.from([0x85, 0xc1]), good[3]!], msgpackCodec, modernCodec).kind).to.equal('drop');
    expect(parseCallosumFrames([id, good[1]!, msgpackCodec.encode({ type: 1 }), good[3]!], msgpackCodec, modernCodec).kind).to.equal(
      'drop',
    );
    // a zipped body that claims to unpack to 1 GiB from a few bytes is refused before anything is allocated
    const zipHeader = msgpackCodec.encode({ type: 1, meth: 'ping', okey: '', seq: 4, zip: true });
    const bomb = parseCallosumFrames(
      [id, good[1]!, zipHeader, Buffer.from([0x80, 0x80, 0x80, 0x80, 0x04, 0x00])],
      msgpackCodec,
      modernCodec,
    );
    expect(bomb.kind === 'malformed' && bomb.reason).to.match(/claims to unpack/);
    const cancel = parseCallosumFrames(upper({ method: 'ping', okey: '', seq: 3, args: [], type: 5 }), msgpackCodec, modernCodec);
    expect(cancel.kind).to.equal('cancel');
  });
});
