/**
 * Parameter declarations of RPC methods and the binding of wire arguments to
 * them. A declaration names the parameter, its type and its limits once; the
 * same object checks incoming arguments, types the handler and the client,
 * and describes the method in listings.
 */
import { ArgumentsError } from '../errors.js';

/** Param is one declared parameter; `check` returns the value or throws a readable reason. */
export interface Param<T> {
  readonly name: string;
  readonly optional: boolean;
  /** Short type description for listings and error messages, e.g. `str (1-64 chars)`. */
  readonly type: string;
  check(value: unknown): T;
}

/** A parameter the caller may leave out. */
export type OptionalParam<T> = Param<T | undefined> & { readonly optional: true };

/** The handler-side types of a parameter list. */
export type ParamValues<P extends readonly Param<unknown>[]> = {
  -readonly [K in keyof P]: P[K] extends Param<infer T> ? T : never;
};

/** The caller-side argument lists: all values, or without trailing optional ones. */
export type CallArgs<P extends readonly Param<unknown>[]> = P extends readonly [...infer Init extends readonly Param<unknown>[], infer Last]
  ? Last extends { readonly optional: true }
    ? ParamValues<P> | CallArgs<Init>
    : ParamValues<P>
  : ParamValues<P>;

class CheckFailed extends Error {}
const fail = (reason: string): never => {
  throw new CheckFailed(reason);
};

function describeValue(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return `bytes of length ${v.length}`;
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  if (typeof v === 'string') return `str of length ${v.length}`;
  return `${typeof v} ${String(v)}`;
}

function make<T>(name: string, type: string, check: (v: unknown) => T): Param<T> {
  return { name, type, optional: false, check };
}

/** Options shared by string parameters. */
export interface StrOptions {
  minLength?: number;
  maxLength?: number;
  /** A pattern the whole string must match, and a human description of it. */
  pattern?: { re: RegExp; says: string };
}

/** Builders of parameter declarations. */
export const p = {
  str(name: string, o: StrOptions = {}): Param<string> {
    const min = o.minLength ?? 0;
    const max = o.maxLength ?? 65_536;
    return make(name, `str (${min}-${max} chars${o.pattern ? `, ${o.pattern.says}` : ''})`, (v) => {
      if (typeof v !== 'string') return fail(`must be a str, got ${describeValue(v)}`);
      if (v.length < min || v.length > max) return fail(`must be ${min} to ${max} characters long, got ${v.length}`);
      if (o.pattern && !o.pattern.re.test(v)) return fail(`must be ${o.pattern.says}`);
      return v;
    });
  },

  int(name: string, o: { min?: number; max?: number } = {}): Param<number> {
    const min = o.min ?? Number.MIN_SAFE_INTEGER;
    const max = o.max ?? Number.MAX_SAFE_INTEGER;
    return make(name, `int (${min}..${max})`, (v) => {
      const n = typeof v === 'bigint' && v <= BigInt(max) && v >= BigInt(min) ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isInteger(n)) return fail(`must be an int, got ${describeValue(v)}`);
      if (n < min || n > max) return fail(`must be between ${min} and ${max}, got ${n}`);
      return n;
    });
  },

  float(name: string, o: { min?: number; max?: number } = {}): Param<number> {
    const min = o.min ?? -Number.MAX_VALUE;
    const max = o.max ?? Number.MAX_VALUE;
    return make(name, `float (${min}..${max})`, (v) => {
      if (typeof v !== 'number' || !Number.isFinite(v)) return fail(`must be a finite number, got ${describeValue(v)}`);
      if (v < min || v > max) return fail(`must be between ${min} and ${max}, got ${v}`);
      return v;
    });
  },

  bytes(name: string, o: { maxLength: number }): Param<Buffer> {
    return make(name, `bytes (at most ${o.maxLength})`, (v) => {
      if (!(v instanceof Uint8Array)) return fail(`must be bytes, got ${describeValue(v)}`);
      if (v.length > o.maxLength) return fail(`must be at most ${o.maxLength} bytes, got ${v.length}`);
      return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.length);
    });
  },

  bool(name: string): Param<boolean> {
    return make(name, 'bool', (v) => (typeof v === 'boolean' ? v : fail(`must be a bool, got ${describeValue(v)}`)));
  },

  /** A list of strings, each checked like {@link p.str}. */
  strList(name: string, o: StrOptions & { maxItems: number }): Param<string[]> {
    const item = p.str(name, o);
    return make(name, `list of at most ${o.maxItems} ${item.type}`, (v) => {
      if (!Array.isArray(v)) return fail(`must be a list, got ${describeValue(v)}`);
      if (v.length > o.maxItems) return fail(`must have at most ${o.maxItems} items, got ${v.length}`);
      return v.map((x) => item.check(x));
    });
  },

  map(name: string): Param<Record<string, unknown>> {
    return make(name, 'map', (v) => {
      if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) {
        return fail(`must be a map, got ${describeValue(v)}`);
      }
      return v as Record<string, unknown>;
    });
  },

  oneOf<const V extends string>(name: string, values: readonly V[]): Param<V> {
    return make(name, values.map((x) => JSON.stringify(x)).join(' | '), (v) => {
      if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
        return fail(`must be one of ${values.join(', ')}, got ${typeof v === 'string' ? JSON.stringify(v) : describeValue(v)}`);
      }
      return v as V;
    });
  },

  /** A list whose items each pass `item` (which names the item in its type only). */
  list<T>(name: string, item: Param<T>, o: { maxLength: number }): Param<T[]> {
    return make(name, `list of ${item.type} (at most ${o.maxLength})`, (v) => {
      if (!Array.isArray(v)) return fail(`must be a list, got ${describeValue(v)}`);
      if (v.length > o.maxLength) return fail(`must have at most ${o.maxLength} items, got ${v.length}`);
      return v.map((x, i) => {
        try {
          return item.check(x);
        } catch (err) {
          if (err instanceof CheckFailed) return fail(`item ${i} ${err.message}`);
          throw err;
        }
      });
    });
  },

  /** A value checked by a function that returns it or a reason it is wrong (a string). */
  custom<T>(name: string, type: string, check: (v: unknown) => { ok: T } | string): Param<T> {
    return make(name, type, (v) => {
      const r = check(v);
      return typeof r === 'string' ? fail(r) : r.ok;
    });
  },

  /** The same parameter, where nil is also accepted. */
  nullable<T>(param: Param<T>): Param<T | null> {
    return { ...param, type: `${param.type} or nil`, check: (v) => (v === null || v === undefined ? null : param.check(v)) };
  },

  /** The same parameter, which the caller may leave out (it must come after the required ones). */
  optional<T>(param: Param<T>): OptionalParam<T> {
    return { ...param, optional: true, type: `${param.type}, optional`, check: (v) => (v === undefined ? undefined : param.check(v)) };
  },
};

/**
 * Binds positional and keyword arguments to a parameter list, the way
 * Python's `inspect.signature().bind()` does for aiozmq, then checks each
 * value. Throws ArgumentsError (a ParametersError) with a message that names the parameter.
 */
export function bindArguments(
  method: string,
  params: readonly Param<unknown>[],
  args: unknown[],
  kwargs: Record<string, unknown>,
): unknown[] {
  if (args.length > params.length) {
    throw new ArgumentsError(`${method}() takes at most ${params.length} arguments (${args.length} given)`);
  }
  const known = new Set(params.map((x) => x.name));
  for (const key of Object.keys(kwargs)) {
    if (!known.has(key)) throw new ArgumentsError(`${method}() got an unexpected keyword argument '${key}'`);
  }
  return params.map((param, i) => {
    const inKw = Object.prototype.hasOwnProperty.call(kwargs, param.name);
    if (i < args.length && inKw) throw new ArgumentsError(`${method}() got multiple values for argument '${param.name}'`);
    const value = i < args.length ? args[i] : inKw ? kwargs[param.name] : undefined;
    if (value === undefined && !param.optional && !(i < args.length || inKw)) {
      throw new ArgumentsError(`${method}() is missing a required argument: '${param.name}'`);
    }
    try {
      return param.check(value);
    } catch (err) {
      if (err instanceof CheckFailed) throw new ArgumentsError(`${method}(): argument '${param.name}' ${err.message}`);
      throw err;
    }
  });
}
