/**
 * The bounds of one decode of what a manager sends (docs/wire-contract.rst,
 * "RPC"): the total work of reading a request, whatever its bytes announce.
 * Depth and lengths alone do not bound it: a 117-byte pickle of memo-shared
 * tuples expands to 2^28 values, and 20 MB of msgpack empty arrays become
 * 800 MB of JS arrays. So every value a decode makes is charged to a
 * {@link DecodeBudget}, and the msgpack of a request is walked (without
 * making anything) by {@link checkMsgpackBounds} before it is decoded.
 */
import { ParametersError } from '../errors.js';

/**
 * The most work one request's decode may take, in values made (msgpack
 * values, and pickle values as they expand). The largest request the method
 * tables accept (100,000 kernel-session pairs of `destroy_kernels`: 300,002
 * values) fits with room; a million values decode in about a tenth of a
 * second and some 50 MB, where the frame limit alone would let one request
 * make a billion.
 */
export const MAX_DECODE_WORK = 1_000_000;

/**
 * The deepest a decoded value may nest. A manager's deepest values (a
 * kernel config's maps) are under 10 levels; 100 keeps every walk of a
 * request (msgpackr's reader, the argument checks, the pickle converter)
 * far from the end of the stack, where a deeper one would die with a
 * RangeError instead of a clear refusal.
 */
export const MAX_DECODE_DEPTH = 100;

/**
 * DecodeBudget is the work one decode may still do: each value made is
 * spent from it, and from its parent's (a pickle's budget is part of its
 * request's). Spending past the limit throws a ParametersError.
 */
export class DecodeBudget {
  private used = 0;

  constructor(
    readonly limit: number = MAX_DECODE_WORK,
    private readonly parent?: DecodeBudget,
  ) {}

  /** The units left to spend (its parent's, where fewer). */
  get remaining(): number {
    const own = this.limit - this.used;
    return this.parent ? Math.min(own, this.parent.remaining) : own;
  }

  /** Spends `n` units for `what` (it names the refused part in the error). */
  spend(n: number, what: string): void {
    this.used += n;
    if (this.used > this.limit) {
      throw new ParametersError(
        `${what}: reading it would make more than ${this.limit} values (a shared value counts each time it is used); it was not read (a manager's values are far smaller)`,
      );
    }
    this.parent?.spend(n, what);
  }
}

/** Bytes after the type byte that a msgpack value of fixed size carries, by type byte (0xc0 to 0xdf). */
function fixedPayload(b: number): number | undefined {
  switch (b) {
    case 0xc0:
    case 0xc2:
    case 0xc3:
      return 0;
    case 0xcc:
    case 0xd0:
      return 1;
    case 0xcd:
    case 0xd1:
      return 2;
    case 0xca:
    case 0xce:
    case 0xd2:
      return 4;
    case 0xcb:
    case 0xcf:
    case 0xd3:
      return 8;
    case 0xd4:
      return 2; // fixext 1: type byte + 1
    case 0xd5:
      return 3;
    case 0xd6:
      return 5;
    case 0xd7:
      return 9;
    case 0xd8:
      return 17;
    default:
      return undefined;
  }
}

/**
 * Walks one msgpack value without making it, and refuses (ParametersError)
 * one that holds more values than the budget has left, nests deeper than
 * {@link MAX_DECODE_DEPTH}, or announces more items than its bytes can
 * hold. Bytes and strings are skipped, never read; ext payloads are left to
 * their readers (which spend from the same budget). Malformed or truncated
 * msgpack ends the walk quietly: the decoder then says what is wrong, as
 * it always has.
 */
export function checkMsgpackBounds(bytes: Uint8Array, budget: DecodeBudget, what: string): void {
  const end = bytes.length;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const outer: number[] = []; // values still to read at each enclosing level
  let left = 1;
  let at = 0;
  let made = 0; // values met, spent at the end (or at once when over what is left)
  const allowed = budget.remaining;
  const refuse = (why: string): never => {
    throw new ParametersError(`${what} ${why}`);
  };
  for (;;) {
    while (left === 0) {
      if (outer.length === 0) return budget.spend(made, what);
      left = outer.pop()!;
    }
    if (at >= end) return budget.spend(made, what);
    const b = bytes[at++]!;
    left -= 1;
    if (++made > allowed) budget.spend(made, what); // throws
    let items = 0; // values a container holds (a map's keys and values)
    let skip = 0; // bytes of payload
    if (b <= 0x7f || b >= 0xe0) skip = 0;
    else if (b <= 0x8f) items = 2 * (b & 0x0f);
    else if (b <= 0x9f) items = b & 0x0f;
    else if (b <= 0xbf) skip = b & 0x1f;
    else {
      const fixed = fixedPayload(b);
      if (fixed !== undefined) skip = fixed;
      else {
        // a length follows: 1, 2 or 4 bytes
        const width =
          b === 0xc4 || b === 0xc7 || b === 0xd9 ? 1 : b === 0xc5 || b === 0xc8 || b === 0xda || b === 0xdc || b === 0xde ? 2 : 4;
        if (b === 0xc1 || at + width > end) return budget.spend(made, what);
        const n = width === 1 ? bytes[at]! : width === 2 ? view.getUint16(at) : view.getUint32(at);
        at += width;
        if (b >= 0xdc) items = b >= 0xde ? 2 * n : n;
        else skip = n + (b >= 0xc7 && b <= 0xc9 ? 1 : 0); // an ext's type byte
      }
    }
    if (items > 0) {
      if (items > end - at) refuse(`announces ${items} values in the ${end - at} bytes left`);
      if (outer.length >= MAX_DECODE_DEPTH) refuse(`nests deeper than ${MAX_DECODE_DEPTH} levels`);
      outer.push(left);
      left = items;
    }
    at += skip;
  }
}
