/**
 * The payload codec: msgpack as aiozmq.rpc speaks it (msgpack 2.0 with
 * use_bin_type, so strings are `str`, byte strings are `bin`).
 *
 * The transport takes a {@link Codec}, so that tests (and one day another
 * encoding) can plug in without touching the socket loop.
 */
import { addExtension, Packr, Unpackr } from 'msgpackr';
import { SendBuffers } from './send-buffers.js';
import { Utf8Text } from './utf8-text.js';
import { hasHeadroom } from './headroom.js';
import { checkMsgpackBounds, type DecodeBudget } from './decode-bounds.js';

/** Codec encodes values to bytes and back for the RPC payload frames. */
export interface Codec {
  /** Encodes one value. */
  encode(value: unknown): Buffer;
  /**
   * Decodes exactly one value; throws on truncated data or trailing bytes.
   * Given a budget (a request's, src/wire/decode-bounds.ts), the values made
   * are spent from it, and a value that would pass it is refused before it
   * is made.
   */
  decode(bytes: Uint8Array, budget?: DecodeBudget): unknown;
  /**
   * Like encode, for a payload that goes to a socket and is then dropped
   * (never kept, never sliced): a big one may be packed into a buffer used
   * again once the payload is collected (`SendBuffers` in src/wire/send-buffers.ts).
   */
  encodeForSend?(value: unknown): Buffer;
}

const packr = new Packr({
  useRecords: false, // msgpackr's record extension is not msgpack that Python reads
  moreTypes: false,
  encodeUndefinedAsNil: true,
  variableMapSize: true, // fixmap/map16 like Python's msgpack, so frames match byte for byte
});

const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  int64AsType: 'number',
});

/**
 * A {@link Utf8Text} goes out as a plain msgpack `str` (the shortest header,
 * as Python's packer writes it) followed by its bytes, copied once. The
 * extension type number is only a key msgpackr requires: nothing is written
 * as an ext, and an ext of that number in a request is refused like any
 * unknown one.
 */
const UTF8_TEXT_KEY = 0x55;
addExtension({
  Class: Utf8Text,
  type: UTF8_TEXT_KEY,
  pack(text: Utf8Text, allocateForWrite: (size: number) => { target: Uint8Array; position: number }) {
    const n = text.byteLength;
    const header =
      n < 32
        ? [0xa0 | n]
        : n < 0x100
          ? [0xd9, n]
          : n < 0x10000
            ? [0xda, n >>> 8, n & 0xff]
            : [0xdb, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
    const { target, position } = allocateForWrite(header.length + n);
    target.set(header, position);
    let at = position + header.length;
    for (const chunk of text.chunks) {
      target.set(chunk, at);
      at += chunk.length;
    }
    return undefined; // written in place: nothing more to add
  },
  unpack() {
    throw new Error(`Unknown extension type ${UTF8_TEXT_KEY}`);
  },
} as unknown as Parameters<typeof addExtension>[0]);

const INT32_MIN = -0x80000000;
const UINT32_MAX = 0xffffffff;

/**
 * msgpackr writes integers beyond 32 bits as float64; Python would then see
 * 25769803776.0 for a byte count. Such integers are turned into BigInt so
 * that they go out as int64/uint64. Only plain arrays and objects are walked;
 * byte buffers are leaves.
 */
function widenIntegers(value: unknown): unknown {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && (value > UINT32_MAX || value < INT32_MIN) ? BigInt(value) : value;
  }
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v = widenIntegers(value[i]);
      if (v !== value[i]) (out ??= value.slice())[i] = v;
    }
    return out ?? value;
  }
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    let out: Record<string, unknown> | undefined;
    for (const [k, v] of Object.entries(value)) {
      const w = widenIntegers(v);
      if (w !== v) (out ??= { ...(value as Record<string, unknown>) })[k] = w;
    }
    return out ?? value;
  }
  return value;
}

/**
 * An upper bound of the packed size of a value (strings at 3 bytes a
 * character, 16 bytes for anything else), for plain arrays, objects,
 * strings, byte buffers and UTF-8 texts.
 */
export function packedSizeBound(value: unknown): number {
  if (typeof value === 'string') return value.length * 3 + 5;
  if (value instanceof Uint8Array) return value.length + 5;
  if (value instanceof Utf8Text) return value.byteLength + 5;
  let n = 16;
  if (Array.isArray(value)) for (const v of value) n += packedSizeBound(v);
  else if (value !== null && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) n += k.length * 3 + 5 + packedSizeBound(v);
  return n;
}

/** The msgpack `bin 32` of a view with headroom (src/wire/headroom.ts): its 5-byte header written just before it, one view over both. */
function binInPlace(view: Uint8Array): Buffer {
  const at = view.byteOffset - 5;
  const out = Buffer.from(view.buffer, at, view.length + 5);
  out[0] = 0xc6;
  out.writeUInt32BE(view.length, 1);
  return out;
}

/**
 * The buffer small values are packed into, one after another: msgpackr
 * starts a new one of the same size when 2 KiB are left. At its default of
 * 8 KiB that was a new buffer every ~770 replies under load, 1 % of the
 * agent's CPU (a profile of the RPC figure); 64 KiB makes it one in ~7,900.
 */
const SMALL_PACK_BYTES = 64 * 1024;
packr.useBuffer(Buffer.allocUnsafeSlow(SMALL_PACK_BYTES));

/** Values whose bound is above this are packed into a buffer of their own (see encode). */
const BIG_VALUE_BYTES = 1024 * 1024;

/** Payloads up to this bound (execute's 16 MiB of output and its envelope) pack into reused buffers. */
const MAX_REUSED_BYTES = 24 * 1024 * 1024;

/** Big payloads sent and dropped (replies of `execute` with much output) reuse their buffers. */
export const sendBuffers = new SendBuffers();

/**
 * Packs a value whose bound is big into `into` (sized so that packing never
 * grows it); then packing goes on in a fresh small buffer, so the big one is
 * referenced only by the packed value. msgpackr otherwise packs into one
 * buffer shared by every call and, when a big string does not fit, allocates
 * a larger one and copies the rest of the old one into it, junk included.
 */
function packInto(v: unknown, into: Buffer): Buffer {
  packr.useBuffer(into);
  try {
    return packr.pack(v);
  } finally {
    packr.useBuffer(Buffer.allocUnsafeSlow(SMALL_PACK_BYTES));
  }
}

/**
 * Packs a value: a big view with headroom in place, a small value into
 * msgpackr's shared buffer, a big one through `big` (given its size bound).
 */
function encodeWith(value: unknown, big: (v: unknown, bound: number) => Buffer): Buffer {
  if (value instanceof Uint8Array && value.length > 0xffff && hasHeadroom(value)) return binInPlace(value); // bin 32: no copy
  const v = widenIntegers(value);
  const bound = packedSizeBound(v);
  return bound <= BIG_VALUE_BYTES ? packr.pack(v) : big(v, bound);
}

/** A buffer of a big value's own, sized so that packing never grows it. */
const ownBuffer = (v: unknown, bound: number): Buffer => packInto(v, Buffer.allocUnsafeSlow(bound + 64 * 1024));

/** A reused send buffer (execute's big replies); a reply bigger than execute's (a download not sent in place) gets one of its own, since the pool keeps none that big. */
function reusedBuffer(v: unknown, bound: number): Buffer {
  if (bound > MAX_REUSED_BYTES) return ownBuffer(v, bound);
  const into = sendBuffers.take(bound + 64 * 1024);
  return sendBuffers.track(packInto(v, into), into);
}

/** msgpackCodec is the msgpack codec the agent and its client use. */
export const msgpackCodec: Codec = {
  encode(value: unknown): Buffer {
    return encodeWith(value, ownBuffer);
  },
  encodeForSend(value: unknown): Buffer {
    return encodeWith(value, reusedBuffer);
  },
  decode(bytes: Uint8Array, budget?: DecodeBudget): unknown {
    // The empty map and array (kwargs and args of most calls) need no unpacker.
    if (bytes.length === 1) {
      if (bytes[0] === 0x80) return {};
      if (bytes[0] === 0x90) return [];
    }
    if (budget) checkMsgpackBounds(bytes, budget, 'msgpack');
    // unpack() rejects trailing bytes, so one frame holds exactly one value.
    return unpackr.unpack(bytes);
  },
};
