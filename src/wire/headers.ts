/**
 * The fixed-size headers of aiozmq.rpc frames (docs/wire-contract.rst, "RPC"),
 * little-endian: request `u16 pid, u16 random, u32 request id, f64 time`
 * (16 bytes), reply the same plus `u8 is_error` (17 bytes).
 */

export const REQUEST_HEADER_SIZE = 16;
export const REPLY_HEADER_SIZE = 17;

/** RequestHeader is the first frame of a request after the envelope. */
export interface RequestHeader {
  pid: number;
  random: number;
  requestId: number;
  time: number;
}

/** ReplyHeader is the first frame of a reply after the envelope. */
export interface ReplyHeader extends RequestHeader {
  isError: boolean;
}

/** Writes the fields both headers share (plain arguments: the server writes one per reply, with no object for it). */
function writeCommon(buf: Buffer, pid: number, random: number, requestId: number, time: number): Buffer {
  buf.writeUInt16LE(pid & 0xffff, 0);
  buf.writeUInt16LE(random & 0xffff, 2);
  buf.writeUInt32LE(requestId >>> 0, 4);
  buf.writeDoubleLE(time, 8);
  return buf;
}

function readCommon(buf: Buffer): RequestHeader {
  return { pid: buf.readUInt16LE(0), random: buf.readUInt16LE(2), requestId: buf.readUInt32LE(4), time: buf.readDoubleLE(8) };
}

const view = (frame: Uint8Array) => Buffer.from(frame.buffer, frame.byteOffset, frame.length);

/** Encodes a request header; used by the client. */
export function encodeRequestHeader(h: RequestHeader): Buffer {
  return writeCommon(Buffer.allocUnsafe(REQUEST_HEADER_SIZE), h.pid, h.random, h.requestId, h.time);
}

/** Decodes a request header, or returns undefined when the frame is not one. */
export function decodeRequestHeader(frame: Uint8Array): RequestHeader | undefined {
  return frame.length === REQUEST_HEADER_SIZE ? readCommon(view(frame)) : undefined;
}

/** Encodes a reply header; used by the server. */
export function encodeReplyHeader(h: ReplyHeader): Buffer {
  return replyHeader(h.pid, h.random, h.requestId, h.time, h.isError);
}

/**
 * Reply headers are cut from slabs of their own: Node's shared pool for
 * small buffers is 8 KiB, and making a new one every 340 replies was 2 % of
 * the agent's CPU under load (a profile of the RPC figure). A header is
 * copied by ZeroMQ when it is sent (frames under 128 bytes are), so a slab
 * lives only as long as replies still waiting in the send queue hold it.
 */
const SLAB_BYTES = 256 * 1024;
const SLOT_BYTES = 24; // 17 rounded up to 8, as Node's pool aligns
let slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
let slabAt = 0;

function replyHeaderBuffer(): Buffer {
  if (slabAt + SLOT_BYTES > SLAB_BYTES) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    slabAt = 0;
  }
  const buf = slab.subarray(slabAt, slabAt + REPLY_HEADER_SIZE);
  slabAt += SLOT_BYTES;
  return buf;
}

/** {@link encodeReplyHeader} from plain arguments: the server writes one per reply, without an object for it. */
export function replyHeader(pid: number, random: number, requestId: number, time: number, isError: boolean): Buffer {
  const buf = writeCommon(replyHeaderBuffer(), pid, random, requestId, time);
  buf[16] = isError ? 1 : 0;
  return buf;
}

/** Decodes a reply header, or returns undefined when the frame is not one. */
export function decodeReplyHeader(frame: Uint8Array): ReplyHeader | undefined {
  if (frame.length !== REPLY_HEADER_SIZE) return undefined;
  const flag = frame[16]!;
  if (flag > 1) return undefined;
  const h = readCommon(view(frame)) as ReplyHeader; // completed in place rather than spread into a new object: the client decodes one per reply
  h.isError = flag === 1;
  return h;
}
