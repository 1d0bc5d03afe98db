/**
 * The listing of RPC methods: their signatures and summaries as `agent
 * methods` prints them and the manual's RPC tables show them.
 */
import { methods, type MethodDef } from './methods.js';
import type { Param } from './params.js';

/** MethodListing is one method as `agent methods` and the manual list it: its signature pieces and summary. */
export interface MethodListing {
  name: string;
  params: Array<{ name: string; type: string; optional: boolean }>;
  returns: string;
  summary: string;
  /** The older argument form still accepted, if any. */
  legacy: Array<{ name: string; type: string; optional: boolean }> | null;
}

/** The listing of methods (all of the 2018 table by default), for `agent methods` and the manual's RPC tables. */
export function listMethods(defs: readonly MethodDef[] = Object.values(methods)): MethodListing[] {
  const ps = (list: readonly Param<unknown>[]) => list.map((x) => ({ name: x.name, type: x.type, optional: x.optional }));
  return defs.map((d) => ({
    name: d.name,
    params: ps(d.params),
    returns: d.returns,
    summary: d.summary,
    legacy: d.legacy ? ps(d.legacy.params) : null,
  }));
}

/** A parameter list as `agent methods` prints it: `name?: type, ...`. */
export function signature(params: MethodListing['params']): string {
  return params.map((x) => `${x.name}${x.optional ? '?' : ''}: ${x.type}`).join(', ');
}

/** describeMethods is the human-readable listing of methods (all of the 2018 table by default) that `agent methods` prints. */
export function describeMethods(defs: readonly MethodDef[] = Object.values(methods)): string {
  return listMethods(defs)
    .map((d) => {
      const legacy = d.legacy ? `\n    also accepted: (${signature(d.legacy)})` : '';
      return `${d.name}(${signature(d.params)}) -> ${d.returns}\n    ${d.summary}${legacy}`;
    })
    .join('\n');
}
