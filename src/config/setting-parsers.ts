/**
 * The parsers of setting values: one per kind of value (a number in bounds,
 * a boolean, one of some words, a list, a path, an address, a port range, a
 * lang), shared by the agent's settings (src/config/setting-table.ts) and the
 * warm pool's (src/pool/settings.ts). Each says what it takes (`type`, for
 * --help and the manual) and throws an Error naming the bad value.
 *
 * Empty values: a string setting (a path, an address, a prefix) reads `''`
 * as "none"; a list reads it as the empty list; a number or a boolean
 * refuses it, so an emptied key is reported and the value in force stays
 * (an empty `kernel_no_new_privileges` must not silently mean false).
 */
import { checkLang } from './lang.js';

/** A parser of a setting's etcd value that says what it takes (`type`, for --help and the manual). */
export type SettingParser<T> = ((raw: string) => T) & { readonly type: string };

/** A parser that says what it takes (`type`). */
export function parser<T>(type: string, parse: (raw: string) => T): SettingParser<T> {
  return Object.assign(parse, { type });
}

/** A parser of a number setting in `min..max` (whole numbers only when `integer`), with errors that name the value. */
export function number(min: number, max: number, integer = false): SettingParser<number> {
  return parser(`${integer ? 'integer' : 'number'} ${min}-${max}`, (raw: string): number => {
    const v = Number(raw.trim());
    if (raw.trim() === '' || !Number.isFinite(v)) throw new Error(`${JSON.stringify(raw)} is not a number`);
    if (integer && !Number.isInteger(v)) throw new Error(`${JSON.stringify(raw)} is not a whole number`);
    if (v < min || v > max) throw new Error(`${v} is outside ${min}..${max}`);
    return v;
  });
}

/** The boolean parser: true, yes, on, 1 or false, no, off, 0 (any case); `''` is refused (see the module's comment). */
export const bool = parser('boolean (true, false, yes, no, on, off, 1, 0; not empty)', (raw: string): boolean => {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new Error(`${JSON.stringify(raw)} is not true or false`);
});

/** A parser of a list (commas or spaces between items), each item checked by `item` (which throws naming it); duplicates dropped. */
export function listOf(what: string, item: (i: string) => void): SettingParser<string[]> {
  return parser(`list, each ${what}; commas or spaces between`, (raw: string): string[] => {
    const items = raw.split(/[\s,]+/).filter(Boolean);
    for (const i of items) item(i);
    return [...new Set(items)];
  });
}

/** A parser of a list whose items match `item`. */
export function list(item: RegExp, what: string): SettingParser<string[]> {
  return listOf(what, (i) => {
    if (!item.test(i)) throw new Error(`${JSON.stringify(i)} is not ${what}`);
  });
}

/** A parser of a list of langs (src/config/lang.ts), as create_kernel takes them. */
export const langList = listOf('a lang name:tag (a registry host allowed, as in 127.0.0.1:5000/x/y:1)', checkLang);

/** A parser of one of some words. */
export function oneOf<T extends string>(...values: T[]): SettingParser<T> {
  return parser(`one of ${values.join(', ')}`, (raw: string): T => {
    const v = values.find((x) => x === raw.trim());
    if (v === undefined) throw new Error(`${JSON.stringify(raw)} is not one of ${values.join(', ')}`);
    return v;
  });
}

/** An IP address, or empty for none. */
export const address = parser('IP address or empty', (raw: string): string => {
  const v = raw.trim();
  if (v !== '' && !/^([0-9.]+|[0-9A-Fa-f:]+)$/.test(v)) throw new Error(`${JSON.stringify(raw)} is not an IP address`);
  return v;
});

/** The bounds of a `container_port_range` value (already checked by its parser). */
export function portRangeBounds(value: string): { lo: number; hi: number } {
  const [lo, hi] = value.split('-').map(Number) as [number, number];
  return { lo, hi };
}

/** `LO-HI`: at least the four runner ports of one kernel, above 1023. */
export const portRange = parser('port range LO-HI (1024 <= LO, HI <= 65535, at least 4 ports)', (raw: string): string => {
  const m = /^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$/.exec(raw);
  const lo = Number(m?.[1]);
  const hi = Number(m?.[2]);
  if (!m || lo < 1024 || hi > 65535 || hi - lo + 1 < 4)
    throw new Error(`${JSON.stringify(raw)} is not a port range LO-HI with 1024 <= LO, HI <= 65535 and at least 4 ports`);
  return `${lo}-${hi}`;
});

/** An absolute path, or empty for none. */
export const filePath = parser('absolute path or empty', (raw: string): string => {
  const v = raw.trim();
  if (v !== '' && !v.startsWith('/')) throw new Error(`${JSON.stringify(raw)} is not an absolute path`);
  return v;
});

/** What goes before a lang to make an image name (checked again with each lang when it resolves, src/config/lang.ts). */
export const imagePrefix = parser('image name prefix (a-z, 0-9, . _ / : -)', (raw: string): string => {
  if (!/^[a-z0-9._/:-]*$/.test(raw)) throw new Error(`${JSON.stringify(raw)} is not a Docker image name prefix`);
  return raw;
});

/** A JSON value (the pool's structured keys); its shape is checked by the caller. */
export function json(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    throw new Error(`${JSON.stringify(raw.slice(0, 80))} is not JSON`);
  }
}
