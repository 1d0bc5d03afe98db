/**
 * The cluster's pending demand, split among the live agents (pure
 * functions: every agent runs them on the same inputs and so computes the
 * same assignment, without talking to the others).
 *
 * The demand is the cluster key `config/agent/pool/demand`, JSON
 * `{lang: {type: pending_count}}`, written by the manager or an operator.
 * Each count is split among the agents by their free capacity (the mean of
 * their share of the free cores and their share of the free memory), by
 * largest remainder, ties going to the smaller agent id; the shares of a
 * count add up to it exactly. An agent's share becomes the pool target of
 * that image and type on that node (see pool/sizing.ts).
 */

/** Pending kernels per lang and resource type. */
export type Demand = Record<string, Record<string, number>>;

/** What the split knows of one live agent. */
export interface AgentCapacity {
  id: string;
  freeCores: number;
  freeMemMiB: number;
}

/** The largest count accepted for one lang and type (a typo must not start a storm). */
export const MAX_PENDING = 100_000;

/** Reads the demand key; throws an Error saying what is wrong (the caller keeps the last good value). */
export function parseDemand(raw: string): Demand {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new Error(`${JSON.stringify(raw.slice(0, 80))} is not JSON: give {"lang": {"type": pending_count}}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('must be a JSON object {"lang": {"type": pending_count}}');
  const out: Demand = {};
  for (const [lang, types] of Object.entries(v)) {
    if (typeof types !== 'object' || types === null || Array.isArray(types))
      throw new Error(`${lang} must map type names to pending counts`);
    out[lang] = {};
    for (const [type, n] of Object.entries(types as Record<string, unknown>)) {
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_PENDING) {
        throw new Error(`${lang}.${type} must be a whole number from 0 to ${MAX_PENDING}, not ${JSON.stringify(n)}`);
      }
      out[lang]![type] = n;
    }
  }
  return out;
}

/** Splits `count` by the weights (>= 0), by largest remainder; ties by the order given. The result adds up to `count`. */
export function largestRemainder(count: number, weights: readonly number[]): number[] {
  if (weights.length === 0 || count <= 0) return weights.map(() => 0);
  const total = weights.reduce((a, b) => a + b, 0);
  const w = total > 0 ? weights : weights.map(() => 1); // nobody has room: an even split, so the demand is still placed
  const sum = total > 0 ? total : weights.length;
  const exact = w.map((x) => (count * x) / sum);
  const shares = exact.map(Math.floor);
  let left = count - shares.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => ({ i, frac: x - Math.floor(x) })).sort((a, b) => b.frac - a.frac || a.i - b.i);
  for (const { i } of order) {
    if (left <= 0) break;
    shares[i]!++;
    left--;
  }
  return shares;
}

/** Each agent's share of every count of the demand: the same answer on every agent for the same inputs. */
export function splitDemand(demand: Demand, agents: readonly AgentCapacity[]): Map<string, Demand> {
  const sorted = [...agents].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const cores = sorted.reduce((a, x) => a + Math.max(0, x.freeCores), 0);
  const mem = sorted.reduce((a, x) => a + Math.max(0, x.freeMemMiB), 0);
  const weights = sorted.map(
    (x) => ((cores > 0 ? Math.max(0, x.freeCores) / cores : 0) + (mem > 0 ? Math.max(0, x.freeMemMiB) / mem : 0)) / 2,
  );
  const out = new Map<string, Demand>(sorted.map((x) => [x.id, {}]));
  for (const lang of Object.keys(demand).sort()) {
    for (const type of Object.keys(demand[lang]!).sort()) {
      const shares = largestRemainder(demand[lang]![type]!, weights);
      sorted.forEach((x, i) => {
        if (shares[i]! > 0) (out.get(x.id)![lang] ??= {})[type] = shares[i]!;
      });
    }
  }
  return out;
}

/**
 * DemandWindow averages the demand over a window, so one spike does not
 * start a storm of creations: the mean of each count over the samples of the
 * last `windowSec`, rounded to the nearest whole number.
 */
export class DemandWindow {
  private samples: Array<{ at: number; demand: Demand }> = [];

  add(demand: Demand, now: number, windowSec: number): Demand {
    this.samples.push({ at: now, demand });
    this.samples = this.samples.filter((s) => now - s.at <= windowSec * 1000);
    const sums: Demand = {};
    for (const s of this.samples) {
      for (const [lang, types] of Object.entries(s.demand)) {
        for (const [type, n] of Object.entries(types)) (sums[lang] ??= {})[type] = (sums[lang]![type] ?? 0) + n;
      }
    }
    const mean: Demand = {};
    for (const [lang, types] of Object.entries(sums)) {
      for (const [type, n] of Object.entries(types)) {
        const m = Math.round(n / this.samples.length);
        if (m > 0) (mean[lang] ??= {})[type] = m;
      }
    }
    return mean;
  }
}
