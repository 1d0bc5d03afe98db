/**
 * The framing of Callosum RPC, the library modern Backend.AI managers talk
 * with (docs/modern-managers.rst), beside aiozmq's on the same ROUTER: telling
 * the generations apart per message, parsing a request's header and body,
 * and building replies in the framing the request came in. No socket here:
 * the ROUTER loop calls these, and unit and fuzz tests feed them frames.
 *
 * 1.x: `[identity, "PING" | "UPPER", header, body]`; 0.9: `[identity,
 * header, body]`. Header: msgpack `{type, meth, okey, seq, zip}`; body:
 * msgpack `{meta: bin, body: bin}` (snappy-compressed as a whole when `zip`),
 * the inner body of a request being msgpack `{args, kwargs}`.
 */
import { uncompressSync } from 'snappy';
import type { Codec } from './codec.js';
import { DecodeBudget } from './decode-bounds.js';
import { REQUEST_HEADER_SIZE } from './headers.js';
import type { DroppedFrames } from './frames.js';

/** The Callosum generation a message came in, which is the one its reply goes out in. */
export type CallosumGeneration = '1.x' | '0.9';

/** Callosum message types (callosum.rpc.message.RPCMessageTypes). */
export const CallosumType = { FUNCTION: 1, RESULT: 2, FAILURE: 3, ERROR: 4, CANCEL: 5, CANCELLED: 6 } as const;

/** The parts of a header a reply echoes, kept as they were decoded so that they go back in the same msgpack types. */
export interface CallosumHeader {
  type: number;
  meth: unknown;
  okey: unknown;
  seq: unknown;
}

interface CallosumBase {
  generation: CallosumGeneration;
  envelope: Buffer[];
  header: CallosumHeader;
  method: string;
}

/** A Callosum call that parsed. */
export interface CallosumRequest extends CallosumBase {
  kind: 'request';
  args: unknown[];
  kwargs: Record<string, unknown>;
}

/** A Callosum call whose header parsed but whose body did not: it gets a ParametersError failure. */
export interface CallosumMalformed extends CallosumBase {
  kind: 'malformed';
  reason: string;
}

/** A client's cancel of one of its calls (nothing is answered). */
export interface CallosumCancel extends CallosumBase {
  kind: 'cancel';
}

/** The 1.x connect handshake: answered at once with these frames. */
export interface CallosumPing {
  kind: 'ping';
  reply: Buffer[];
}

export type CallosumParse = CallosumRequest | CallosumMalformed | CallosumCancel | CallosumPing | DroppedFrames;

const PING = Buffer.from('PING');
const PONG = Buffer.from('PONG');
const UPPER = Buffer.from('UPPER');

const isMapByte = (b: number | undefined) => b !== undefined && ((b >= 0x80 && b <= 0x8f) || b === 0xde || b === 0xdf);

/**
 * Whether a frame set is Callosum's rather than aiozmq's (section 7's
 * table), from frame counts, lengths and first bytes only. Called after the
 * aiozmq fast path has not matched, so aiozmq requests never get here.
 */
export function isCallosumFrames(frames: readonly Buffer[]): boolean {
  if (frames.length === 4) {
    const t = frames[1]!;
    return t.equals(UPPER) || t.equals(PING);
  }
  if (frames.length === 3) {
    const h = frames[1]!;
    return h.length !== REQUEST_HEADER_SIZE && isMapByte(h[0]);
  }
  return false;
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The method name of a header's `meth` (str or, from a raw-mode peer, bin). */
function methodName(meth: unknown): string | undefined {
  if (typeof meth === 'string') return meth;
  if (meth instanceof Uint8Array) {
    try {
      return utf8.decode(meth);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Splits and decodes a frame set that {@link isCallosumFrames} accepted. `headerCodec` reads the header, `codec` the body. */
export function parseCallosumFrames(frames: Buffer[], headerCodec: Codec, codec: Codec): CallosumParse {
  const generation: CallosumGeneration = frames.length === 4 ? '1.x' : '0.9';
  const envelope = frames.slice(0, 1);
  const rawHeader = frames[frames.length - 2]!;
  const rawBody = frames[frames.length - 1]!;
  if (generation === '1.x' && frames[1]!.equals(PING)) {
    return { kind: 'ping', reply: [...envelope, PONG, rawHeader, rawBody] };
  }
  let decoded: unknown;
  const budget = new DecodeBudget(); // header, body and arguments: one request
  try {
    decoded = headerCodec.decode(rawHeader, budget);
  } catch (err) {
    return { kind: 'drop', reason: `bad Callosum header (${(err as Error).message})` };
  }
  if (!isMap(decoded) || typeof decoded.type !== 'number' || !('okey' in decoded) || !('seq' in decoded)) {
    return { kind: 'drop', reason: 'a Callosum header must be a map of type, meth, okey, seq and zip' };
  }
  const header: CallosumHeader = { type: decoded.type, meth: decoded.meth, okey: decoded.okey, seq: decoded.seq };
  const method = methodName(decoded.meth);
  if (method === undefined) return { kind: 'drop', reason: 'the Callosum header has no method name' };
  const base = { generation, envelope, header, method };
  if (header.type === CallosumType.CANCEL) return { kind: 'cancel', ...base };
  const bad = (reason: string): CallosumMalformed => ({ kind: 'malformed', ...base, reason });
  if (header.type !== CallosumType.FUNCTION)
    return bad(`a Callosum message of type ${header.type} is not a call (type 1) or a cancel (type 5)`);

  let outer: unknown;
  try {
    if (decoded.zip === true) checkSnappyLength(rawBody);
    const plain = decoded.zip === true ? uncompressSync(rawBody, { asBuffer: true }) : rawBody;
    outer = headerCodec.decode(plain as Buffer, budget);
  } catch (err) {
    return bad(`the body frame is not ${decoded.zip === true ? 'snappy-compressed ' : ''}msgpack (${(err as Error).message})`);
  }
  if (!isMap(outer) || !('body' in outer)) return bad('the body frame must be a msgpack map of meta and body');
  const inner = outer.body;
  if (inner === null || inner === undefined) return { kind: 'request', ...base, args: [], kwargs: {} };
  if (!(inner instanceof Uint8Array)) return bad('the body of a call must be msgpack bytes of {args, kwargs}');
  let call: unknown;
  try {
    call = codec.decode(inner, budget);
  } catch (err) {
    return bad(`the arguments could not be read: ${(err as Error).message}`);
  }
  if (!isMap(call)) return bad('the arguments must be a map of args and kwargs');
  const args = call.args ?? [];
  const kwargs = call.kwargs ?? {};
  if (!Array.isArray(args)) return bad('args must be a list');
  if (!isMap(kwargs)) return bad('kwargs must be a map');
  return { kind: 'request', ...base, args, kwargs };
}

/** Most that a zipped body may unpack to (rpc_max_message_bytes' default). */
const MAX_UNZIPPED_BYTES = 1100 * 1024 * 1024;

/**
 * Refuses a snappy block whose declared length (the varint that starts it)
 * is more than snappy can expand that many bytes to (about 22 times), or
 * than {@link MAX_UNZIPPED_BYTES}, before anything is allocated for it.
 */
function checkSnappyLength(block: Buffer): void {
  let n = 0;
  let shift = 0;
  for (let i = 0; i < 5; i++) {
    const b = block[i];
    if (b === undefined) throw new Error('truncated snappy length');
    n += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) {
      if (n > Math.min(22 * block.length + 64, MAX_UNZIPPED_BYTES))
        throw new Error(`a zipped body of ${block.length} bytes claims to unpack to ${n}`);
      return;
    }
    shift += 7;
  }
  throw new Error('bad snappy length');
}

/** A failure as a Callosum reply carries it: the exception's short name, its repr, and a traceback (empty: the agent log has it). */
export interface CallosumFailure {
  name: string;
  repr: string;
  traceback: string;
}

/**
 * Builds a reply: a result (type 2) with `meta` = msgpack `[]` and `body`
 * the packed value, or a failure (type 3) with `meta` = msgpack
 * `[name, repr, traceback]` and no body. `meth`, `okey` and `seq` are the
 * request's, in their msgpack types.
 */
export function buildCallosumReply(
  request: { generation: CallosumGeneration; envelope: Buffer[]; header: CallosumHeader },
  codec: Codec,
  outcome: { ok: true; payload: Buffer } | ({ ok: false } & CallosumFailure),
): Buffer[] {
  const h = request.header;
  const header = codec.encode({
    type: outcome.ok ? CallosumType.RESULT : CallosumType.FAILURE,
    meth: h.meth,
    okey: h.okey,
    seq: h.seq,
    zip: false,
  });
  const body = outcome.ok
    ? codec.encode({ meta: EMPTY_LIST, body: outcome.payload })
    : codec.encode({ meta: codec.encode([outcome.name, outcome.repr, outcome.traceback]), body: null });
  const frames = request.envelope.slice();
  if (request.generation === '1.x') frames.push(UPPER);
  frames.push(header, body);
  return frames;
}

/** msgpack of `[]`, the meta of a result. */
const EMPTY_LIST = Buffer.from([0x90]);

/** A reply as a client reads it: the echoed header fields, and the value or the failure. */
export interface CallosumReply {
  header: CallosumHeader;
  result:
    | { ok: true; value: unknown }
    | { ok: false; name: string; repr: string; traceback: string }
    | { ok: false; name: 'cancelled'; repr: string; traceback: string };
}

/**
 * Builds the frames of a call as a client sends them (no identity: the
 * DEALER adds none): 1.x `["UPPER", header, body]`, 0.9 `[header, body]`.
 * Used by the test manager and `agentctl --callosum`.
 */
export function buildCallosumRequest(
  generation: CallosumGeneration,
  codec: Codec,
  call: {
    method: string;
    okey: unknown;
    seq: number;
    args: unknown[];
    kwargs?: Record<string, unknown>;
    type?: number;
    zip?: (b: Buffer) => Buffer;
    packed?: Buffer;
  },
): Buffer[] {
  const header = codec.encode({
    type: call.type ?? CallosumType.FUNCTION,
    meth: call.method,
    okey: call.okey,
    seq: call.seq,
    zip: call.zip !== undefined,
  });
  // `packed`: msgpack of {args, kwargs} made elsewhere (a test's ext values)
  const inner = call.type === CallosumType.CANCEL ? null : (call.packed ?? codec.encode({ args: call.args, kwargs: call.kwargs ?? {} }));
  let body = codec.encode({ meta: Buffer.alloc(0), body: inner });
  if (call.zip) body = call.zip(body);
  return generation === '1.x' ? [UPPER, header, body] : [header, body];
}

/** Reads a reply's frames (without identity) as a client; undefined when they are not a Callosum reply. */
export function parseCallosumReply(frames: Buffer[], codec: Codec): CallosumReply | undefined {
  const parts = frames.length === 3 && frames[0]!.equals(UPPER) ? frames.slice(1) : frames.length === 2 ? frames : undefined;
  if (!parts) return undefined;
  try {
    const h = codec.decode(parts[0]!);
    const b = codec.decode(parts[1]!);
    if (!isMap(h) || !isMap(b) || typeof h.type !== 'number') return undefined;
    const header: CallosumHeader = { type: h.type, meth: h.meth, okey: h.okey, seq: h.seq };
    if (h.type === CallosumType.RESULT) {
      return { header, result: { ok: true, value: b.body instanceof Uint8Array ? codec.decode(b.body) : null } };
    }
    if (h.type === CallosumType.CANCELLED)
      return { header, result: { ok: false, name: 'cancelled', repr: 'the server cancelled the call', traceback: '' } };
    const meta = b.meta instanceof Uint8Array && b.meta.length > 0 ? codec.decode(b.meta) : [];
    const [name, repr, traceback] = Array.isArray(meta) ? meta : [];
    return { header, result: { ok: false, name: String(name ?? 'unknown'), repr: String(repr ?? ''), traceback: String(traceback ?? '') } };
  } catch {
    return undefined;
  }
}

/** The handshake a 1.x client sends on connect and the agent answers with `PONG`. */
export const CALLOSUM_PING: readonly Buffer[] = [PING, Buffer.alloc(0), Buffer.alloc(0)];
