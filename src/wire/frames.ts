/**
 * Parsing of request frame sets and building of reply frame sets, without a
 * socket: the ROUTER loop calls these, and unit tests feed them the captured
 * aiozmq frames.
 */
import type { Codec } from './codec.js';
import { DecodeBudget } from './decode-bounds.js';
import { decodeRequestHeader, replyHeader, type RequestHeader } from './headers.js';

/** A request that parsed: what the RPC layer needs, and where to send the reply. */
export interface ParsedRequest {
  kind: 'request';
  envelope: Buffer[];
  header: RequestHeader;
  method: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
}

/** A request whose header parsed but whose body did not: it gets a ParametersError reply. */
export interface MalformedRequest {
  kind: 'malformed';
  envelope: Buffer[];
  header: RequestHeader;
  method: string;
  reason: string;
}

/** A frame set with no parseable header: dropped and counted. */
export interface DroppedFrames {
  kind: 'drop';
  reason: string;
}

export type ParseResult = ParsedRequest | MalformedRequest | DroppedFrames;

/** Frames after the envelope: header, method name, args, kwargs. */
const BODY_FRAMES = 4;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Splits a frame set received on the ROUTER into envelope and request, as
 * aiozmq does (`*envelope, header, name, args, kwargs`), and decodes it.
 * A short frame set whose second frame is a valid header still gets a reply
 * naming the problem, so a client does not wait for nothing.
 */
export function parseRequestFrames(frames: Buffer[], codec: Codec): ParseResult {
  if (frames.length < 1 + BODY_FRAMES) {
    const header = frames.length >= 2 ? decodeRequestHeader(frames[1]!) : undefined;
    if (!header) return { kind: 'drop', reason: `too few frames (${frames.length})` };
    return {
      kind: 'malformed',
      envelope: frames.slice(0, 1),
      header,
      method: '?',
      reason: `a request has ${BODY_FRAMES} frames after the envelope (header, name, args, kwargs), got ${frames.length - 1}`,
    };
  }
  const at = frames.length - BODY_FRAMES;
  const envelope = frames.slice(0, at);
  const header = decodeRequestHeader(frames[at]!);
  if (!header) return { kind: 'drop', reason: `bad header frame (${frames[at]!.length} bytes, want 16)` };
  const bad = (method: string, reason: string): MalformedRequest => ({ kind: 'malformed', envelope, header, method, reason });

  let method: string;
  try {
    method = utf8.decode(frames[at + 1]!);
  } catch {
    return bad('?', 'the method name frame is not valid UTF-8');
  }
  let args: unknown;
  let kwargs: unknown;
  const budget = new DecodeBudget(); // args and kwargs together: one request
  try {
    args = codec.decode(frames[at + 2]!, budget);
  } catch (err) {
    return bad(method, `the args frame is not valid msgpack (${(err as Error).message})`);
  }
  try {
    kwargs = codec.decode(frames[at + 3]!, budget);
  } catch (err) {
    return bad(method, `the kwargs frame is not valid msgpack (${(err as Error).message})`);
  }
  if (!Array.isArray(args)) return bad(method, 'the args frame must be a msgpack array');
  if (kwargs === null || typeof kwargs !== 'object' || Array.isArray(kwargs) || Buffer.isBuffer(kwargs)) {
    return bad(method, 'the kwargs frame must be a msgpack map');
  }
  return { kind: 'request', envelope, header, method, args, kwargs: kwargs as Record<string, unknown> };
}

/** The identity this server stamps on its replies, as aiozmq's server does. */
export interface ServerStamp {
  pid: number;
  random: number;
}

/** Builds the frames of a reply: envelope, 17-byte header, payload. */
export function buildReplyFrames(envelope: Buffer[], stamp: ServerStamp, requestId: number, isError: boolean, payload: Buffer): Buffer[] {
  const header = replyHeader(stamp.pid, stamp.random, requestId, Date.now() / 1000, isError);
  const frames = envelope.slice(); // no spread: this runs once per reply
  frames.push(header, payload);
  return frames;
}
