/**
 * Grammars of hostile manager input for the decode fuzz
 * (tests/security/decode-fuzz.test.ts): pickles as a modern manager's ext
 * values carry them and msgpack values as both managers send them, drawn
 * from a seeded PRNG so that a failing case is made again from its seed and
 * number. Besides plain values they make what a hostile manager would:
 * values the memo shares (MEMOIZE, BINGET, LONG_BINGET), memo-shared tuple
 * chains (2^n values in 4n bytes), a list that holds itself, deep nesting,
 * lengths and counts announced far beyond the bytes, ext inside ext, and
 * random opcodes and bytes.
 */

/** The 117-byte pickle of issue 27 at 28 levels: None, then (BINGET i, TUPLE2, MEMOIZE) per level, 2^(levels+1) - 1 values. */
export function dagPickle(levels: number): Buffer {
  const b = [0x80, 4, 0x4e, 0x94];
  for (let i = 0; i < levels; i++) b.push(...(i < 256 ? [0x68, i] : [0x6a, i & 0xff, i >> 8, 0, 0]), 0x86, 0x94);
  b.push(0x2e);
  return Buffer.from(b);
}

/** Rand is a small seeded PRNG (mulberry32) with the draws the grammars need. */
export class Rand {
  private s: number;

  constructor(seed: number) {
    this.s = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

const u32le = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
const u16be = (n: number) => [(n >>> 8) & 0xff, n & 0xff];
const u32be = (n: number) => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
const text = (s: string) => [...Buffer.from(s)];

/** The globals a manager's pickles name, and one it never does. */
const GLOBALS = [
  ['decimal', 'Decimal'],
  ['ai.backend.common.types', 'SessionTypes'],
  ['ai.backend.common.types', 'ResourceSlot'],
  ['ai.backend.common.types', 'BinarySize'],
  ['ai.backend.common.docker', 'ImageRef'],
  ['builtins', 'getattr'],
  ['posix', 'system'],
] as const;

/** Opcodes of pickle protocols 0 to 5, known to the reader or not, for the random ones. */
const OPCODES = [
  0x28, 0x29, 0x2e, 0x42, 0x43, 0x47, 0x4a, 0x4b, 0x4d, 0x4e, 0x52, 0x58, 0x5d, 0x61, 0x62, 0x65, 0x68, 0x6a, 0x73, 0x74, 0x75, 0x7d, 0x80,
  0x81, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c, 0x93, 0x94, 0x95, 0x63, 0x69, 0x6f, 0x70, 0x71, 0x72, 0x8f, 0x90, 0x92, 0x96, 0x97, 0x98,
];

/** Writes a pickle: one value made of productions (each leaves one value on the stack), then STOP; sometimes damaged. */
export function genPickle(r: Rand): Buffer {
  const out: number[] = [0x80, r.pick([2, 3, 4, 5])];
  let memo = 0;
  const memoize = () => {
    out.push(0x94);
    memo += 1;
  };
  const str = (s: string) => out.push(0x8c, Buffer.byteLength(s), ...text(s));
  const leaf = () => {
    switch (r.int(9)) {
      case 0:
        return out.push(0x4e);
      case 1:
        return out.push(r.chance(0.5) ? 0x88 : 0x89);
      case 2:
        return out.push(0x4b, r.int(256));
      case 3:
        return out.push(0x4a, ...u32le(r.int(2 ** 32)));
      case 4:
        return out.push(0x8a, 8, ...Array.from({ length: 8 }, () => r.int(256)));
      case 5:
        return str(r.pick(['cpu', 'mem', '1.5', 'python', 'USER_REQUESTED', '']));
      case 6:
        return out.push(0x43, 3, 1, 2, 3);
      case 7:
        return out.push(0x47, ...Array.from({ length: 8 }, () => r.int(256)));
      default:
        return out.push(0x58, ...u32le(2), ...text('ok'));
    }
  };
  const value = (depth: number): void => {
    const kind = depth > 5 ? r.int(3) : r.int(15);
    switch (kind) {
      case 0:
      case 1:
        leaf();
        break;
      case 2:
        if (memo > 0) out.push(...(r.chance(0.5) ? [0x68, r.int(Math.min(memo, 256))] : [0x6a, ...u32le(r.int(memo))]));
        else leaf();
        break;
      case 3: {
        const n = r.int(4);
        for (let i = 0; i < n; i++) value(depth + 1);
        out.push(n === 0 ? 0x29 : 0x84 + n);
        break;
      }
      case 4: {
        out.push(0x28);
        for (let i = r.int(5); i > 0; i--) value(depth + 1);
        out.push(0x74);
        break;
      }
      case 5: {
        out.push(0x5d);
        if (r.chance(0.5)) memoize();
        if (r.chance(0.5)) {
          value(depth + 1);
          out.push(0x61);
        } else {
          out.push(0x28);
          for (let i = r.int(5); i > 0; i--) value(depth + 1);
          out.push(0x65);
        }
        break;
      }
      case 6: {
        out.push(0x7d);
        if (r.chance(0.5)) memoize();
        out.push(0x28);
        for (let i = r.int(4); i > 0; i--) {
          str(r.pick(['a', 'b', 'data', '__proto__', 'constructor']));
          value(depth + 1);
        }
        out.push(0x75);
        break;
      }
      case 7: {
        // a Decimal, an enum member, a BinarySize, a ResourceSlot, or a global never allowed
        const [module, name] = r.pick(GLOBALS);
        str(module);
        str(name);
        out.push(0x93);
        if (name === 'ResourceSlot' || name === 'ImageRef') {
          out.push(0x29, 0x81, 0x7d);
          str('data');
          value(depth + 1);
          out.push(0x73, 0x62);
        } else {
          value(depth + 1);
          out.push(0x85, r.chance(0.8) ? 0x52 : 0x81);
        }
        break;
      }
      case 8: {
        // memo-shared tuples: 2^n values in 4n bytes
        value(depth + 1);
        memoize();
        for (let n = 1 + r.int(40); n > 0; n--) {
          out.push(...(memo - 1 < 256 ? [0x68, memo - 1] : [0x6a, ...u32le(memo - 1)]), 0x86);
          memoize();
        }
        break;
      }
      case 9: {
        // a list that holds itself
        out.push(0x5d);
        memoize();
        out.push(0x68, memo - 1, 0x61);
        break;
      }
      case 10: {
        // deep: tuples of one, or lists in lists
        const n = r.pick([10, 99, 100, 101, 1000, 20_000]);
        if (r.chance(0.5)) {
          value(depth + 1);
          for (let i = 0; i < n; i++) out.push(0x85);
        } else {
          for (let i = 0; i < n; i++) out.push(0x5d);
          for (let i = 1; i < n; i++) out.push(0x61);
        }
        break;
      }
      case 11: {
        // lengths and references far beyond the bytes
        const huge = r.pick([0xffffffff, 0x7fffffff, 1 << 20, 256]);
        out.push(
          ...r.pick([
            [0x58, ...u32le(huge)],
            [0x42, ...u32le(huge)],
            [0x6a, ...u32le(huge)],
            [0x95, ...u32le(huge), 0, 0, 0, 0],
          ]),
        );
        leaf();
        break;
      }
      case 12:
        // many values on the stack at once, then gathered by MARK ... TUPLE
        out.push(0x28);
        for (let i = r.pick([1000, 5000, 20_000]); i > 0; i--) out.push(0x4e);
        out.push(0x74);
        break;
      default:
        leaf();
    }
    if (r.chance(0.3)) memoize();
  };
  value(0);
  out.push(0x2e);
  const bytes = Buffer.from(out);
  // damage: a random opcode put in, a byte changed, or the end cut
  if (r.chance(0.15)) {
    const at = r.int(bytes.length);
    return Buffer.concat([bytes.subarray(0, at), Buffer.from([r.pick(OPCODES)]), bytes.subarray(at)]);
  }
  if (r.chance(0.1)) bytes[r.int(bytes.length)] = r.int(256);
  if (r.chance(0.05)) return bytes.subarray(0, r.int(bytes.length));
  return bytes;
}

/** The ext types of the modern manager, and some it never sends. */
const EXT_TYPES = [1, 2, 3, 4, 5, 6, 7, 8, 16, 0, 9, 0x55, 127];

/** Writes one msgpack value of the grammar (as a manager's args or body), sometimes damaged. */
export function genMsgpack(r: Rand): Buffer {
  const out: number[] = [];
  const ext = (type: number, data: number[]) => {
    const n = data.length;
    if (n === 1 || n === 2 || n === 4 || n === 8 || n === 16) out.push(0xd4 + Math.log2(n), type);
    else out.push(...(n < 256 ? [0xc7, n] : n < 0x10000 ? [0xc8, ...u16be(n)] : [0xc9, ...u32be(n)]), type);
    for (const b of data) out.push(b); // not spread: an ext may hold 100,000 bytes of nesting
  };
  const value = (depth: number): void => {
    const kind = depth > 5 ? r.int(4) : r.int(13);
    switch (kind) {
      case 0:
        out.push(r.pick([0x00, 0x7f, 0xe0, 0xc0, 0xc2, 0xc3]));
        break;
      case 1:
        out.push(
          ...r.pick([
            [0xcc, 1],
            [0xcd, 1, 2],
            [0xce, 1, 2, 3, 4],
            [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0],
            [0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0],
          ]),
        );
        break;
      case 2:
        out.push(
          ...r.pick([
            [0xa2, ...text('hi')],
            [0xd9, 3, ...text('abc')],
            [0xc4, 2, 1, 2],
            [0xda, 0, 1, 0x41],
          ]),
        );
        break;
      case 3: {
        // an ext: a pickle, a UUID, a path, or an ext whose data is msgpack holding an ext
        const type = r.pick(EXT_TYPES);
        if ([3, 6, 7, 8, 16].includes(type)) ext(type, [...genPickle(r)]);
        else if (type === 1)
          ext(
            type,
            Array.from({ length: r.chance(0.9) ? 16 : 15 }, () => r.int(256)),
          );
        else {
          const start = out.length;
          value(depth + 1);
          ext(type, out.splice(start));
        }
        break;
      }
      case 4: {
        const n = r.int(5);
        out.push(0x90 | n);
        for (let i = 0; i < n; i++) value(depth + 1);
        break;
      }
      case 5: {
        const n = r.int(4);
        out.push(0x80 | n);
        for (let i = 0; i < n; i++) {
          out.push(0xa1, 0x61 + i);
          value(depth + 1);
        }
        break;
      }
      case 6: {
        // counts and lengths announced far beyond the bytes
        const huge = r.pick([0xffffffff, 0x10000, 2 ** 31]);
        out.push(r.pick([0xdd, 0xdf, 0xdb, 0xc6, 0xc9]), ...u32be(huge));
        if (r.chance(0.5)) out.push(0x90, 0x90);
        break;
      }
      case 7: {
        // deep nesting
        const n = r.pick([50, 99, 100, 101, 1000, 100_000]);
        for (let i = 0; i < n; i++) {
          if (r.chance(0.5)) out.push(0x91);
          else out.push(0x81, 0xa0); // a map of one, its key ""
        }
        out.push(0xc0);
        break;
      }
      case 8:
      case 9:
        out.push(r.int(256), r.int(256));
        break;
      default:
        out.push(0xc0);
    }
  };
  if (r.chance(0.01)) {
    // many small values in few bytes: empty arrays, over the budget of a request
    const n = r.pick([1_000_001, 1_500_000]);
    const wide = Buffer.alloc(5 + n, 0x90);
    wide[0] = 0xdd;
    wide.writeUInt32BE(n, 1);
    return wide;
  }
  value(0);
  const bytes = Buffer.from(out);
  if (r.chance(0.1)) bytes[r.int(bytes.length)] = r.int(256);
  if (r.chance(0.05)) return bytes.subarray(0, r.int(bytes.length));
  return bytes;
}
