/**
 * Z85 (ZeroMQ RFC 32), the text form of CURVE keys: 32 bytes <-> 40
 * characters. zeromq.js makes key pairs in Z85 but exports no codec, and the
 * ZAP handler receives keys as raw bytes.
 */
const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
const INDEX = new Map([...ALPHABET].map((c, i) => [c, i]));

/** A CURVE key in Z85: 40 characters of the Z85 alphabet. */
export const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

/** Encodes bytes (a multiple of 4 long) as Z85. */
export function z85Encode(data: Uint8Array): string {
  if (data.length % 4 !== 0) throw new Error('Z85 encodes a multiple of 4 bytes');
  let out = '';
  for (let i = 0; i < data.length; i += 4) {
    let v = ((data[i]! << 24) | (data[i + 1]! << 16) | (data[i + 2]! << 8) | data[i + 3]!) >>> 0;
    const chunk: string[] = [];
    for (let j = 0; j < 5; j++) {
      chunk.unshift(ALPHABET[v % 85]!);
      v = Math.floor(v / 85);
    }
    out += chunk.join('');
  }
  return out;
}

/** Decodes Z85 text (a multiple of 5 long); throws on a character outside the alphabet. */
export function z85Decode(text: string): Buffer {
  if (text.length % 5 !== 0) throw new Error('Z85 text is a multiple of 5 characters');
  const out = Buffer.alloc((text.length / 5) * 4);
  for (let i = 0; i < text.length; i += 5) {
    let v = 0;
    for (let j = 0; j < 5; j++) {
      const d = INDEX.get(text[i + j]!);
      if (d === undefined) throw new Error(`${JSON.stringify(text[i + j])} is not a Z85 character`);
      v = v * 85 + d;
    }
    if (v > 0xffffffff) throw new Error('Z85 group out of range');
    out.writeUInt32BE(v, (i / 5) * 4);
  }
  return out;
}
