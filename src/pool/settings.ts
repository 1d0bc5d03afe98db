/**
 * PoolSettings are the warm-pool keys under `config/agent/pool/` (cluster)
 * and `nodes/agents/<id>/config/pool/` (node, wins), compiled key by key: a
 * bad value is reported with its key and the last good value of that key
 * stays in force, so one typo never empties a pool.
 *
 *   pool/types            [{"name":"small","cpu":1,"memory":256,"gpu":0}, ...]  memory in MiB (or "512m", "2g"); gpu optional
 *   pool/images           {"python:3-debian": {"small": 2, "large": 1}}  floor counts per lang and type
 *   pool/autoscale        true | false
 *   pool/autoscale_window seconds of claims the autoscaler looks back on
 *   pool/max              most containers of one image and type
 *   pool/max_idle         seconds an idle container above the target may stay
 *   pool/zombie_allowance seconds before an untracked pooled container is removed
 *   pool/check_interval   seconds between hygiene and sizing passes
 *   pool/readiness_interval seconds between readiness checks of an idle container (0: only at creation)
 *   pool/fill_concurrency pooled containers created at once
 *   pool/demand_window    seconds the cluster's pending demand (`pool/demand`) is averaged over
 *   pool/freeze           true | false: idle pooled containers wait paused (src/pool/freeze.ts)
 *
 * `config/agent/pool/demand` itself is not a setting but an input (services/demand-share.ts).
 */
import { bool, json, number, parser, type SettingParser } from '../config/setting-parsers.js';
import { DEMAND_SUBKEY, POOL_SUBKEY } from '../config/etcd-keys.js';
import { isLang } from '../config/lang.js';

/** A resource type of pooled containers. */
export interface PoolType {
  name: string;
  cpu: number;
  memMiB: number;
  /** Whole GPUs each container holds while idle (0: none); a claim needs exactly this many. */
  gpu: number;
}

/** The compiled pool settings. */
export interface PoolSettings {
  types: PoolType[];
  /** Floor counts per lang (`name:tag`, without the image prefix) and type name. */
  images: Record<string, Record<string, number>>;
  autoscale: boolean;
  autoscaleWindowSec: number;
  max: number;
  maxIdleSec: number;
  zombieAllowanceSec: number;
  checkIntervalSec: number;
  readinessIntervalSec: number;
  fillConcurrency: number;
  demandWindowSec: number;
  /** Idle pooled containers wait paused (the cgroup freezer) between their checks and until a claim. */
  freeze: boolean;
}

export const POOL_DEFAULTS: PoolSettings = {
  types: [],
  images: {},
  autoscale: false,
  autoscaleWindowSec: 300,
  max: 8,
  maxIdleSec: 600,
  zombieAllowanceSec: 300,
  checkIntervalSec: 2,
  readinessIntervalSec: 30,
  fillConcurrency: 2,
  demandWindowSec: 60,
  freeze: false,
};

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Reads a memory size: a number of MiB, or a string with a k/m/g suffix. */
function memMiB(v: unknown, where: string): number {
  let mib: number;
  if (typeof v === 'number') mib = v;
  else if (typeof v === 'string' && /^\d+(\.\d+)?[kmg]?b?$/i.test(v.trim())) {
    const m = /^(\d+(?:\.\d+)?)([kmg]?)/i.exec(v.trim())!;
    const unit = m[2]!.toLowerCase();
    mib = Number(m[1]) * (unit === 'g' ? 1024 : unit === 'k' ? 1 / 1024 : 1);
  } else throw new Error(`${where} memory ${JSON.stringify(v)} must be MiB or a size such as "512m"`);
  if (!(mib >= 4 && mib <= 16 * 1024 * 1024)) throw new Error(`${where} memory ${JSON.stringify(v)} must be from 4 MiB to 16 TiB`);
  return Math.floor(mib);
}

const parseTypes = parser('JSON list of {name, cpu, memory, gpu?}', (raw: string): PoolType[] => {
  const v = json(raw);
  if (!Array.isArray(v)) throw new Error('must be a JSON list of {"name", "cpu", "memory"}');
  const seen = new Set<string>();
  return v.map((t: unknown, i) => {
    if (typeof t !== 'object' || t === null) throw new Error(`entry ${i} must be an object {"name", "cpu", "memory"}`);
    const { name, cpu, memory, gpu = 0 } = t as Record<string, unknown>;
    if (typeof name !== 'string' || !NAME.test(name)) throw new Error(`entry ${i} name must be letters, digits, "_", "." or "-"`);
    if (seen.has(name)) throw new Error(`type ${name} is listed twice`);
    seen.add(name);
    if (typeof cpu !== 'number' || !Number.isInteger(cpu) || cpu < 1 || cpu > 1024)
      throw new Error(`type ${name} cpu must be a whole number of cores >= 1`);
    if (typeof gpu !== 'number' || !Number.isInteger(gpu) || gpu < 0 || gpu > 64)
      throw new Error(`type ${name} gpu must be a whole number of GPUs from 0 to 64`);
    return { name, cpu, memMiB: memMiB(memory, `type ${name}`), gpu };
  });
});

const parseImages = parser('JSON map {lang: {type: count 0-1000}}', (raw: string): Record<string, Record<string, number>> => {
  const v = json(raw);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('must be a JSON map {"<lang>": {"<type>": <count>}}');
  const out: Record<string, Record<string, number>> = {};
  for (const [lang, counts] of Object.entries(v)) {
    if (!isLang(lang)) throw new Error(`${JSON.stringify(lang)} is not a lang such as "python:3-debian"`);
    if (typeof counts !== 'object' || counts === null || Array.isArray(counts)) throw new Error(`${lang} must map type names to counts`);
    out[lang] = {};
    for (const [type, n] of Object.entries(counts as Record<string, unknown>)) {
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 1000)
        throw new Error(`${lang} count of ${type} must be a whole number from 0 to 1000`);
      out[lang]![type] = n;
    }
  }
  return out;
});

type Field = keyof PoolSettings;

/** PoolSettingSpec is the declaration of one warm-pool key (below `pool/`); the manual's pool table is written from these. */
export interface PoolSettingSpec<K extends Field = Field> {
  key: string;
  field: K;
  /** What the key means, in plain text. */
  doc: string;
  /** Gives the field's type: a parser of another type for a field fails to compile. */
  parse: SettingParser<PoolSettings[K]>;
}

/** Declares one pool key, its parser checked against its field's type. */
function poolSetting<K extends Field>(spec: PoolSettingSpec<K>): PoolSettingSpec<K> {
  return spec;
}

/** Sets one field; `K` ties the value's type to the field's. */
function put<K extends Field>(out: PoolSettings, field: K, value: PoolSettings[K]): void {
  out[field] = value;
}

/** Every warm-pool key (all apply live), in the order of the manual's table; the defaults are {@link POOL_DEFAULTS}. */
export const POOL_SETTINGS = [
  poolSetting({
    key: 'types',
    field: 'types',
    doc: 'resource types: [{"name": "small", "cpu": 1, "memory": 256}, ...]; memory in MiB or a size such as "2g"; optional "gpu": N whole GPUs held while idle',
    parse: parseTypes,
  }),
  poolSetting({
    key: 'images',
    field: 'images',
    doc: 'per lang (as the manager sends it), the count of each type to keep warm: {"python:3-debian": {"small": 2, "large": 1}}',
    parse: parseImages,
  }),
  poolSetting({
    key: 'autoscale',
    field: 'autoscale',
    doc: "let each image's target follow recent demand (the counts stay the floor)",
    parse: bool,
  }),
  poolSetting({
    key: 'autoscale_window',
    field: 'autoscaleWindowSec',
    doc: 'seconds of demand the autoscaler looks back on',
    parse: number(1, 7 * 24 * 3600, false),
  }),
  poolSetting({
    key: 'max',
    field: 'max',
    doc: 'most warm containers of one image and type under autoscale',
    parse: number(0, 1000, true),
  }),
  poolSetting({
    key: 'max_idle',
    field: 'maxIdleSec',
    doc: 'seconds an idle container above the autoscaled target may stay',
    parse: number(0, 7 * 24 * 3600, false),
  }),
  poolSetting({
    key: 'zombie_allowance',
    field: 'zombieAllowanceSec',
    doc: 'seconds before an untracked container labelled as pooled is removed',
    parse: number(0, 7 * 24 * 3600, false),
  }),
  poolSetting({
    key: 'check_interval',
    field: 'checkIntervalSec',
    doc: 'seconds between hygiene and sizing passes',
    parse: number(0.1, 3600, false),
  }),
  poolSetting({
    key: 'readiness_interval',
    field: 'readinessIntervalSec',
    doc: 'seconds between readiness checks (a status request, 5 s to answer) of an idle container; 0 = only when it is created',
    parse: number(0, 7 * 24 * 3600, false),
  }),
  poolSetting({
    key: 'fill_concurrency',
    field: 'fillConcurrency',
    doc: 'pooled containers created at once (separate from create_concurrency)',
    parse: number(1, 64, true),
  }),
  poolSetting({
    key: 'demand_window',
    field: 'demandWindowSec',
    doc: "seconds the cluster's pending demand (pool/demand, see Running a fleet) is averaged over",
    parse: number(0, 24 * 3600, false),
  }),
  poolSetting({
    key: 'freeze',
    field: 'freeze',
    doc: 'idle containers wait paused (docker pause, the cgroup freezer) until a claim or a readiness check unpauses them',
    parse: bool,
  }),
];
const KEYS = POOL_SETTINGS;

/** The pool keys (below `pool/`), for the settings' unknown-key check. */
export const POOL_KEYS: ReadonlySet<string> = new Set([...KEYS.map((k) => POOL_SUBKEY + k.key), DEMAND_SUBKEY]);

/** One rejected value: the full key (with its prefix) and what is wrong. */
export interface PoolProblem {
  source: string;
  message: string;
}

/**
 * Compiles the pool settings from the cluster and node maps (keys relative to
 * `config/`, e.g. `pool/types`); node values win. A rejected key keeps its
 * value in `lastGood` (the defaults at start). `images` naming a type that
 * `types` lacks is rejected as a whole.
 */
export function compilePoolSettings(
  cluster: Record<string, string>,
  node: Record<string, string>,
  prefixes: { cluster: string; node: string },
  lastGood: PoolSettings = POOL_DEFAULTS,
): { settings: PoolSettings; problems: PoolProblem[] } {
  const settings: PoolSettings = { ...POOL_DEFAULTS };
  const problems: PoolProblem[] = [];
  const sourceOf: Partial<Record<Field, string>> = {};
  for (const k of KEYS) {
    for (const [prefix, values] of [
      [prefixes.cluster, cluster],
      [prefixes.node, node],
    ] as const) {
      const raw = values[POOL_SUBKEY + k.key];
      if (raw === undefined) continue;
      try {
        put(settings, k.field, k.parse(raw));
        sourceOf[k.field] = prefix + POOL_SUBKEY + k.key;
      } catch (err) {
        problems.push({ source: prefix + POOL_SUBKEY + k.key, message: (err as Error).message });
        put(settings, k.field, lastGood[k.field]);
      }
    }
  }
  const typeNames = new Set(settings.types.map((t) => t.name));
  for (const [lang, counts] of Object.entries(settings.images)) {
    const missing = Object.keys(counts).find((t) => !typeNames.has(t));
    if (missing) {
      problems.push({
        source: sourceOf.images ?? `${prefixes.cluster}${POOL_SUBKEY}images`,
        message: `${lang} names type ${missing}, which pool/types does not define`,
      });
      const fallback = lastGood.images;
      const stillValid = Object.values(fallback).every((c) => Object.keys(c).every((t) => typeNames.has(t)));
      settings.images = stillValid ? fallback : {};
      break;
    }
  }
  return { settings, problems };
}

/** The smallest type (fewest cores, then least memory) that holds a request with exactly its GPU count, or null. */
export function fittingType(types: readonly PoolType[], cpu: number, memMiB: number, gpu = 0): PoolType | null {
  const fits = types.filter((t) => t.cpu >= cpu && t.memMiB >= memMiB && t.gpu === gpu);
  fits.sort((a, b) => a.cpu - b.cpu || a.memMiB - b.memMiB);
  return fits[0] ?? null;
}
