/**
 * The values of the restricted pickle reader (src/wire/pickle.ts) as it
 * builds them: the allowed globals, objects NEWOBJ made, tuples, lists and
 * dicts kept as the reader's own nodes (shared as the memo shares them), and
 * their one copy into a plain value at STOP, which spends from the decode's
 * budget (src/wire/decode-bounds.ts) for every value it copies.
 */
import { ParametersError } from '../errors.js';
import { MAX_DECODE_DEPTH, type DecodeBudget } from './decode-bounds.js';

/** What a global of the allow-list becomes when it is called. */
export type GlobalKind = 'decimal' | 'enum' | 'object' | 'userdict' | 'int' | 'getattr';

/** Global is an allowed global a pickle named (STACK_GLOBAL), with what calling it makes. */
export class Global {
  constructor(
    readonly path: string,
    readonly kind: GlobalKind,
  ) {}
}
/** An object made by NEWOBJ that BUILD has not filled yet. */
export class Pending {
  constructor(readonly cls: Global) {}
}
/** The MARK a MARK opcode pushes, popped by TUPLE, APPENDS and SETITEMS. */
export const MARK = Symbol('mark');
/** A tuple as the reader builds it (its items are nodes, copied out at STOP). */
export class Tuple {
  constructor(readonly items: unknown[]) {}
}
/** A list as the reader builds it (APPEND adds nodes, copied out at STOP). */
export class List {
  readonly items: unknown[] = [];
}
/** A dict as the reader builds it: its keys and values in order, a later key winning. */
export class Dict {
  readonly entries: [string, unknown][] = [];
  get(k: string): unknown {
    for (let i = this.entries.length - 1; i >= 0; i--) if (this.entries[i]![0] === k) return this.entries[i]![1];
    return undefined;
  }
}

/** Throws the ParametersError of a pickle that is not read, `what` naming it and `why` saying why. */
export function refuse(what: string, why: string): never {
  throw new ParametersError(`${what}: ${why}; it was not read (only plain values of the modern manager's types are accepted)`);
}

/**
 * Copies what the stack holds into a plain value, spending 1 per value (and
 * 1 per 64 bytes of text): tuples and lists become arrays, dicts objects, a
 * pending object an empty map. A node the memo shares is copied each time
 * it is met, so its whole size is spent again.
 */
export function plain(v: unknown, budget: DecodeBudget, what: string, depth = 0): unknown {
  budget.spend(1, what);
  if (v === null || typeof v !== 'object') {
    if (typeof v === 'string' && v.length >= 64) budget.spend(v.length >>> 6, what);
    return v;
  }
  if (v instanceof Tuple || v instanceof List) {
    if (depth >= MAX_DECODE_DEPTH) refuse(what, `it nests deeper than ${MAX_DECODE_DEPTH} levels (or holds itself)`);
    const items = v.items;
    const out = new Array<unknown>(items.length);
    for (let i = 0; i < items.length; i++) out[i] = plain(items[i], budget, what, depth + 1);
    return out;
  }
  if (v instanceof Dict) {
    if (depth >= MAX_DECODE_DEPTH) refuse(what, `it nests deeper than ${MAX_DECODE_DEPTH} levels (or holds itself)`);
    const m: Record<string, unknown> = {};
    for (const [k, x] of v.entries)
      Object.defineProperty(m, k, { value: plain(x, budget, what, depth + 1), enumerable: true, writable: true, configurable: true });
    return m;
  }
  if (Buffer.isBuffer(v)) {
    budget.spend(v.length >>> 6, what);
    return Buffer.from(v);
  }
  if (v instanceof Pending) return {};
  if (v instanceof Global) return refuse(what, `the bare global ${v.path} is not a value`);
  return v;
}
