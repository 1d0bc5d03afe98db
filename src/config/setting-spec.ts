/**
 * The shape of one etcd setting's declaration and the function that
 * declares it, shared by the tables of settings (setting-table.ts and
 * setting-table-boundaries.ts).
 */
import type { SettingParser } from './setting-parsers.js';

/** SettingSpec is the declaration of one etcd setting: the manual's settings table is written from these. */
export interface SettingSpec<F extends string = string, T = unknown> {
  /** Key below `config/agent/` (cluster) and `nodes/agents/<id>/config/` (node). */
  readonly key: string;
  /** The field of {@link Settings} that holds the compiled value. */
  readonly field: F;
  /** What the setting means, in plain text (it goes into --help, error messages and the manual). */
  readonly doc: string;
  readonly default: T;
  /** Whether a change applies while running; otherwise it applies at the next start. */
  readonly live: boolean;
  readonly parse: SettingParser<T>;
  /** The manual section that tells more, by its title. */
  readonly see?: string;
}

/** Declares one setting; `default` must be of the type `parse` gives (NoInfer: the parser alone decides it). */
export function setting<const F extends string, T>(spec: {
  key: string;
  field: F;
  doc: string;
  default: NoInfer<T>;
  live: boolean;
  parse: SettingParser<T>;
  see?: string;
}): SettingSpec<F, T> {
  return spec;
}
