/**
 * The settings the agent reads from etcd (docs/wire-contract.rst, "etcd"), compiled:
 * the one function that turns cluster-wide and per-node values into a typed
 * {@link Settings} object by the table of src/config/setting-table.ts. It
 * runs at start (where a bad value stops the agent) and again on every
 * change (where a bad value is logged and the last good settings stay).
 */
import { settingPrefixes, POOL_SUBKEY } from './etcd-keys.js';
import { SETTINGS, type Settings } from './setting-table.js';

/** Sets one field; `K` ties the value's type to the field's. */
function put<K extends keyof Settings>(out: Partial<Settings>, field: K, value: Settings[K]): void {
  out[field] = value;
}

/** The defaults of every setting. */
export function defaultSettings(): Settings {
  const out: Partial<Settings> = {};
  for (const s of SETTINGS) put(out, s.field, s.default);
  return out as Settings; // every field is set: Settings has exactly the fields of SETTINGS
}

/** One problem found while compiling; `source` is the etcd key that holds the bad value. */
export interface SettingProblem {
  source: string;
  field: keyof Settings;
  message: string;
}

/** What {@link compileSettings} returns: the settings, and what it had to reject or ignore. */
export interface CompiledSettings {
  settings: Settings;
  problems: SettingProblem[];
  /** Keys that are not settings of this agent (typos, or settings of a newer agent). */
  unknown: string[];
}

/**
 * Compiles settings from the cluster-wide and per-node key/value maps (keys
 * relative to their `config/` prefix); node values win. A bad value keeps the
 * default (or the cluster value) and is reported as a problem.
 */
export function compileSettings(
  cluster: Record<string, string>,
  node: Record<string, string>,
  prefixes = settingPrefixes('<id>'),
): CompiledSettings {
  const out = defaultSettings();
  const problems: SettingProblem[] = [];
  // Keys below `pool/` are the warm pool's, compiled by src/pool/settings.ts.
  const known = new Set<string>(SETTINGS.map((s) => s.key));
  const isKnown = (k: string) => known.has(k) || k.startsWith(POOL_SUBKEY);
  for (const spec of SETTINGS) {
    for (const [source, values] of [
      [prefixes.cluster, cluster],
      [prefixes.node, node],
    ] as const) {
      const raw = values[spec.key];
      if (raw === undefined) continue;
      try {
        put(out, spec.field, spec.parse(raw));
      } catch (err) {
        problems.push({ source: source + spec.key, field: spec.field, message: `${(err as Error).message} (${spec.doc})` });
      }
    }
  }
  const unknown = [
    ...Object.keys(cluster)
      .filter((k) => !isKnown(k))
      .map((k) => prefixes.cluster + k),
    ...Object.keys(node)
      .filter((k) => !isKnown(k))
      .map((k) => prefixes.node + k),
  ];
  return { settings: out, problems, unknown };
}

/** The fields whose value differs between two settings objects, with whether each applies live. */
export function changedSettings(before: Settings, after: Settings): Array<{ key: string; live: boolean }> {
  return SETTINGS.filter((s) => JSON.stringify(before[s.field]) !== JSON.stringify(after[s.field])).map((s) => ({
    key: s.key,
    live: s.live,
  }));
}
