/**
 * The wire codec against hand-built byte layouts and against real frames
 * captured from the stock aiozmq.rpc client and server
 * (tests/fixtures/aiozmq-frames.json, kept in the repository so that a clone
 * alone runs its tests).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { MethodNotFoundError, ParametersError, toWireError } from '../../src/errors.js';
import { Utf8Text } from '../../src/wire/utf8-text.js';
import { msgpackCodec } from '../../src/wire/codec.js';
import { HEADROOM_BYTES, withHeadroom } from '../../src/wire/headroom.js';
import { buildReplyFrames, parseRequestFrames } from '../../src/wire/frames.js';
import { decodeReplyHeader, decodeRequestHeader, encodeReplyHeader, encodeRequestHeader } from '../../src/wire/headers.js';
import { REPO_ROOT } from '../helpers/env.js';

interface Fixtures {
  requests: Array<{ method: string; frames: string[] }>;
  replies: Array<{ call: string; request_id: number; frames: string[] }>;
}
const fixtures: Fixtures = JSON.parse(readFileSync(path.join(REPO_ROOT, 'tests/fixtures/aiozmq-frames.json'), 'utf8'));
const hex = (h: string) => Buffer.from(h, 'hex');
const identity = Buffer.from([0, 0x6b, 0x8b, 0x45, 0x67]);
const request = (method: string) => fixtures.requests.find((r) => r.method === method)!.frames.map(hex);
const reply = (call: string) => fixtures.replies.find((r) => r.call.startsWith(call))!;

describe('wire codec', () => {
  it('packs a big view with headroom as bin 32 in place: the same bytes as a copy, the same memory as the view', () => {
    const backing = Buffer.allocUnsafeSlow(HEADROOM_BYTES + 300_000).fill(0xee);
    const view = backing.subarray(HEADROOM_BYTES);
    for (let i = 0; i < view.length; i++) view[i] = i % 251;
    const copied = msgpackCodec.encode(Buffer.from(view)); // an unmarked buffer: packed by copy
    const inPlace = msgpackCodec.encode(withHeadroom(view));
    expect(inPlace.equals(copied)).to.equal(true);
    expect(inPlace.buffer).to.equal(backing.buffer);
    expect(inPlace.byteOffset).to.equal(backing.byteOffset + HEADROOM_BYTES - 5);
    expect((msgpackCodec.decode(inPlace) as Buffer).equals(view)).to.equal(true);
    expect(() => withHeadroom(backing.subarray(2))).to.throw(/no room/);
  });

  describe('headers', () => {
    it('lays out a request header as u16 pid, u16 random, u32 id, f64 time, little-endian', () => {
      const bytes = encodeRequestHeader({ pid: 0x1234, random: 0xabcd, requestId: 7, time: 1.5 });
      expect(bytes.toString('hex')).to.equal('3412cdab07000000' + '000000000000f83f');
      expect(decodeRequestHeader(bytes)).to.deep.equal({ pid: 0x1234, random: 0xabcd, requestId: 7, time: 1.5 });
    });

    it('lays out a reply header as the request header plus a u8 error flag (17 bytes)', () => {
      const ok = encodeReplyHeader({ pid: 1, random: 2, requestId: 0xffffffff, time: 0, isError: false });
      const err = encodeReplyHeader({ pid: 1, random: 2, requestId: 3, time: 0, isError: true });
      expect(ok.toString('hex')).to.equal('01000200ffffffff000000000000000000');
      expect(err.length).to.equal(17);
      expect(err[16]).to.equal(1);
      expect(decodeReplyHeader(err)).to.include({ requestId: 3, isError: true });
    });

    it('rejects headers of the wrong size and error flags other than 0 and 1', () => {
      expect(decodeRequestHeader(Buffer.alloc(15))).to.equal(undefined);
      expect(decodeRequestHeader(Buffer.alloc(17))).to.equal(undefined);
      const bad = encodeReplyHeader({ pid: 1, random: 2, requestId: 3, time: 0, isError: true });
      bad[16] = 2;
      expect(decodeReplyHeader(bad)).to.equal(undefined);
    });

    it('reads the headers of captured aiozmq frames', () => {
      const h = decodeRequestHeader(request('ping')[0]!)!;
      expect(h.requestId).to.equal(1);
      expect(h.time).to.be.within(1.5e9, 2e9);
      const r = decodeReplyHeader(hex(reply('boom').frames[0]!))!;
      expect(r).to.include({ requestId: 2, isError: true });
    });
  });

  describe('requests from the stock aiozmq client', () => {
    it('parses ping', () => {
      const parsed = parseRequestFrames([identity, ...request('ping')], msgpackCodec);
      expect(parsed).to.deep.include({ kind: 'request', method: 'ping', args: ['hello'], kwargs: {} });
      expect(parsed.kind === 'request' && parsed.envelope).to.deep.equal([identity]);
    });

    it('parses create_kernel with a 2018 config', () => {
      const parsed = parseRequestFrames([identity, ...request('create_kernel')], msgpackCodec);
      expect(parsed.kind).to.equal('request');
      expect(parsed.kind === 'request' && parsed.args).to.deep.equal([
        '8d1e2b8a-0f3c-4a51-9a3e-4c1b7f0e2d11',
        { lang: 'python:3.6-debian', limits: { mem_slot: 256, cpu_slot: 1.0, gpu_slot: 0.0 }, mounts: [], environ: { A: '1' } },
      ]);
    });

    it('parses execute with a nil run id', () => {
      const parsed = parseRequestFrames([identity, ...request('execute')], msgpackCodec);
      expect(parsed.kind === 'request' && parsed.args).to.deep.equal([
        2,
        '8d1e2b8a-0f3c-4a51-9a3e-4c1b7f0e2d11',
        null,
        'query',
        'print(1)',
        {},
      ]);
    });

    it('parses upload_file with bytes as a Buffer', () => {
      const parsed = parseRequestFrames([identity, ...request('upload_file')], msgpackCodec);
      const args = parsed.kind === 'request' ? parsed.args : [];
      expect(args[1]).to.equal('a/b.txt');
      expect(Buffer.isBuffer(args[2])).to.equal(true);
      expect((args[2] as Buffer).toString('hex')).to.equal('00ff64617461');
    });
  });

  describe('replies as the stock aiozmq server sends them', () => {
    it('encodes a string value byte for byte', () => {
      expect(msgpackCodec.encode('hello').toString('hex')).to.equal(reply('ping').frames[1]);
    });

    it('encodes a map with bytes, nil and a float byte for byte', () => {
      const value = { id: 'k1', cpu_set: [0, 1], data: Buffer.from([0, 1]), none: null, f: 1.5 };
      expect(msgpackCodec.encode(value).toString('hex')).to.equal(reply('blob').frames[1]);
    });

    it('encodes NotFoundError byte for byte', () => {
      const w = toWireError(new MethodNotFoundError('nosuch'), 'nosuch');
      expect(msgpackCodec.encode([w.type, w.args, w.repr]).toString('hex')).to.equal(reply('nosuch').frames[1]);
    });

    it('encodes errors as [type name, args, repr] that decode like the captured ParametersError', () => {
      const captured = msgpackCodec.decode(hex(reply('ping()').frames[1]!)) as unknown[];
      const ours = toWireError(new ParametersError("ping() is missing a required argument: 'msg'"), 'ping');
      expect(captured[0]).to.equal(ours.type);
      expect(ours.args).to.have.length(1);
      expect(ours.repr).to.equal(`ParametersError("ping() is missing a required argument: 'msg'")`);
      const keyError = msgpackCodec.decode(hex(reply('boom').frames[1]!));
      expect(keyError).to.deep.equal(['builtins.KeyError', ['kernel-x'], "KeyError('kernel-x')"]);
    });

    it('sends integers beyond 32 bits as msgpack integers, not floats', () => {
      // int64 (0xd3) or uint64 (0xcf): Python reads both as int; float64 (0xcb) would be 25769803776.0
      const int64 = (b: Buffer) => b.length === 9 && (b[0] === 0xd3 || b[0] === 0xcf);
      expect(int64(msgpackCodec.encode(25769803776))).to.equal(true);
      expect(msgpackCodec.encode(-25769803776).toString('hex')).to.equal('d3fffffffa00000000');
      const nested = msgpackCodec.encode({ mem: 25769803776, list: [2 ** 40] });
      expect(nested.includes(0xcb)).to.equal(false);
      expect(msgpackCodec.decode(nested)).to.deep.equal({ mem: 25769803776, list: [2 ** 40] });
      expect(msgpackCodec.decode(msgpackCodec.encode({ big: 2 ** 40 }))).to.deep.equal({ big: 2 ** 40 });
    });

    it('sends strings as str and bytes as bin', () => {
      expect(msgpackCodec.encode('é')[0]! & 0xe0).to.equal(0xa0); // fixstr
      expect(msgpackCodec.encode(Buffer.from('é'))[0]).to.equal(0xc4); // bin8
      expect(msgpackCodec.encode(undefined).toString('hex')).to.equal('c0');
    });

    it('packs UTF-8 text held as bytes exactly as the same string, at every str header size', () => {
      for (const n of [0, 31, 32, 255, 256, 65535, 65536, 3 * 1024 * 1024]) {
        const s = 'é'.repeat(Math.floor(n / 2)) + 'x'.repeat(n % 2); // n bytes
        const bytes = Buffer.from(s);
        const text = new Utf8Text().appendUtf8(bytes.subarray(0, 7)).appendUtf8(bytes.subarray(7)); // in two chunks
        const reply = (v: unknown) => ({ runId: 'r', console: [['stdout', v]], exitCode: null });
        expect(msgpackCodec.encode(reply(text)).equals(msgpackCodec.encode(reply(s))), `${n} bytes`).to.equal(true);
        expect(msgpackCodec.encode(text).equals(msgpackCodec.encode(s)), `${n} bytes alone`).to.equal(true);
      }
    });

    it('refuses, in a request, an ext of the number msgpackr files UTF-8 text under', () => {
      expect(() => msgpackCodec.decode(Buffer.from([0xd4, 0x55, 0x00]))).to.throw(/Unknown extension type 85/);
    });
  });

  describe('frame sets', () => {
    const [header, , args, kwargs] = request('ping') as [Buffer, Buffer, Buffer, Buffer];

    it('keeps an envelope of several frames and echoes it in the reply', () => {
      const env = [Buffer.from('proxy'), identity];
      const parsed = parseRequestFrames([...env, ...request('ping')], msgpackCodec);
      expect(parsed.kind === 'request' && parsed.envelope).to.deep.equal(env);
      const frames = buildReplyFrames(env, { pid: 1, random: 2 }, 9, false, msgpackCodec.encode('x'));
      expect(frames.slice(0, 2)).to.deep.equal(env);
      expect(decodeReplyHeader(frames[2]!)).to.include({ requestId: 9, isError: false });
      expect(frames).to.have.length(4);
    });

    it('drops frame sets without a parseable header', () => {
      expect(parseRequestFrames([identity], msgpackCodec).kind).to.equal('drop');
      expect(parseRequestFrames([identity, Buffer.alloc(5)], msgpackCodec).kind).to.equal('drop');
      expect(parseRequestFrames([identity, Buffer.alloc(3), Buffer.from('ping'), args, kwargs], msgpackCodec).kind).to.equal('drop');
    });

    it('answers a frame set with a valid header but too few frames', () => {
      const parsed = parseRequestFrames([identity, header, Buffer.from('ping')], msgpackCodec);
      expect(parsed.kind).to.equal('malformed');
      expect(parsed.kind === 'malformed' && parsed.reason).to.match(/4 frames/);
    });

    it('answers bad msgpack, a non-array args frame, a non-map kwargs frame and a non-UTF-8 name', () => {
      const cases: Array<[Buffer[], RegExp]> = [
        [[identity, header, Buffer.from('ping'), Buffer.from([0x92, 0xa1]), kwargs], /args frame is not valid msgpack/],
        [[identity, header, Buffer.from('ping'), Buffer.from([0x91, 0xc0, 0xc0]), kwargs], /args frame is not valid msgpack/],
        [[identity, header, Buffer.from('ping'), Buffer.from([0xa1, 0x61]), kwargs], /must be a msgpack array/],
        [[identity, header, Buffer.from('ping'), args, Buffer.from([0x90])], /must be a msgpack map/],
        [[identity, header, Buffer.from([0xff, 0xfe]), args, kwargs], /not valid UTF-8/],
      ];
      for (const [frames, reason] of cases) {
        const parsed = parseRequestFrames(frames, msgpackCodec);
        expect(parsed.kind).to.equal('malformed');
        expect(parsed.kind === 'malformed' && parsed.reason).to.match(reason);
      }
    });
  });
});
