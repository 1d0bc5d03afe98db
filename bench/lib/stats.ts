/**
 * Order statistics of a sample: the median and the 99th percentile are what
 * every figure reports (by nearest rank, so each is a value that was really
 * measured); for rates, where higher is better, the bad tail is the 1st
 * percentile.
 */

/** A sample summarized. */
export interface Summary {
  n: number;
  min: number;
  /** The 1st percentile: the bad tail of a rate, where higher is better. */
  p1: number;
  median: number;
  p99: number;
  max: number;
}

/** The q-quantile (0..1) of sorted values by nearest rank; NaN for no values. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

/** The median: the middle value, or the mean of the two middle ones. */
export function median(sorted: readonly number[]): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  return n % 2 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
}

/** Summarizes values in any order. */
export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((x, y) => x - y);
  return {
    n: sorted.length,
    min: sorted[0] ?? NaN,
    p1: quantile(sorted, 0.01),
    median: median(sorted),
    p99: quantile(sorted, 0.99),
    max: sorted.at(-1) ?? NaN,
  };
}
