/**
 * The streaming figure's cheap client codec: requests are packed as the
 * agent's client packs them, and replies are read by a small msgpack
 * reader that hands back every `str` or `bin` longer than 256 bytes as its
 * length only ({@link Skipped}), never as a string. A manager's client
 * decodes the output (msgpackr: about 0.7 ms per MiB here); the direct and
 * hop clients of the figure count bytes. With this codec the agent's client
 * counts bytes too, so that the two cores the figure shares go to the
 * process measured, as the RPC figure's C load generator does.
 */
import { msgpackCodec, type Codec } from '../../src/wire/codec.js';

/** A long `str` or `bin` of a reply, by its length. */
export class Skipped {
  constructor(readonly byteLength: number) {}
}

/** Strings and byte strings up to this length are read as values; longer ones are skipped. */
const KEEP_BYTES = 256;

const utf8 = new TextDecoder('utf-8', { fatal: true });

class Reader {
  at = 0;
  private readonly view: DataView;

  constructor(private readonly b: Uint8Array) {
    this.view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  private need(n: number): number {
    const at = this.at;
    if (at + n > this.b.length) throw new Error(`truncated msgpack at byte ${at}`);
    this.at = at + n;
    return at;
  }

  private bytes(n: number, text: boolean): unknown {
    const at = this.need(n);
    if (n > KEEP_BYTES) return new Skipped(n);
    const part = this.b.subarray(at, at + n);
    return text ? utf8.decode(part) : Buffer.from(part);
  }

  private u(n: 1 | 2 | 4): number {
    const at = this.need(n);
    return n === 1 ? this.view.getUint8(at) : n === 2 ? this.view.getUint16(at) : this.view.getUint32(at);
  }

  private array(n: number): unknown[] {
    const out = new Array<unknown>(n);
    for (let i = 0; i < n; i++) out[i] = this.value();
    return out;
  }

  private map(n: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const k = this.value();
      out[String(k)] = this.value();
    }
    return out;
  }

  value(): unknown {
    const t = this.u(1);
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 0x100;
    if (t >= 0xa0 && t <= 0xbf) return this.bytes(t & 0x1f, true);
    if (t >= 0x90 && t <= 0x9f) return this.array(t & 0x0f);
    if (t >= 0x80 && t <= 0x8f) return this.map(t & 0x0f);
    const v = this.view;
    switch (t) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.bytes(this.u(1), false);
      case 0xc5:
        return this.bytes(this.u(2), false);
      case 0xc6:
        return this.bytes(this.u(4), false);
      case 0xca:
        return v.getFloat32(this.need(4));
      case 0xcb:
        return v.getFloat64(this.need(8));
      case 0xcc:
        return this.u(1);
      case 0xcd:
        return this.u(2);
      case 0xce:
        return this.u(4);
      case 0xcf:
        return Number(v.getBigUint64(this.need(8)));
      case 0xd0:
        return v.getInt8(this.need(1));
      case 0xd1:
        return v.getInt16(this.need(2));
      case 0xd2:
        return v.getInt32(this.need(4));
      case 0xd3:
        return Number(v.getBigInt64(this.need(8)));
      case 0xd9:
        return this.bytes(this.u(1), true);
      case 0xda:
        return this.bytes(this.u(2), true);
      case 0xdb:
        return this.bytes(this.u(4), true);
      case 0xdc:
        return this.array(this.u(2));
      case 0xdd:
        return this.array(this.u(4));
      case 0xde:
        return this.map(this.u(2));
      case 0xdf:
        return this.map(this.u(4));
      default:
        throw new Error(`msgpack type 0x${t.toString(16)} at byte ${this.at - 1} is not read by the counting codec`);
    }
  }
}

/** Decodes one msgpack value with long strings skipped; trailing bytes are an error, as in the agent's codec. */
export function decodeSkipping(bytes: Uint8Array): unknown {
  const r = new Reader(bytes);
  const v = r.value();
  if (r.at !== bytes.length) throw new Error(`${bytes.length - r.at} bytes after the msgpack value`);
  return v;
}

export const countingCodec: Codec = {
  encode: (value) => msgpackCodec.encode(value),
  decode: decodeSkipping,
};
