/**
 * The shape every benchmark figure has, and the one loop that runs them: a
 * figure is a ratio of two sides measured in the same run, interleaved
 * (A,B then B,A, round after round) so that the noise of a shared machine
 * falls on both sides alike, with warm-up rounds left out of the figures.
 * A figure is one module under `bench/figures/` that exports a {@link Figure}.
 */
import type { BenchEnv } from './lib/env.js';
import { summarize, type Summary } from './lib/stats.js';

/** Which way a metric is better. */
export type Better = 'lower' | 'higher';

/** One quantity a figure measures on both sides, e.g. `latency@16` in ms. */
export interface MetricDef {
  key: string;
  label: string;
  unit: string;
  better: Better;
}

/** What one side measured in one round: values per metric key (a round may give many, e.g. every call's latency). */
export type Samples = Record<string, number[]>;

/** One side of a figure, ready to measure. */
export interface Side {
  label: string;
  /** Measures one round; untimed set-up and tear-down per round belong in here too, outside the timed part. */
  measure(round: number): Promise<Samples>;
}

/** Both sides of a figure, set up, and how to take them down. */
export interface Prepared {
  a: Side;
  b: Side;
  /**
   * Limit anchors: what the figure's best case is on this machine (e.g. a
   * bare echo server for RPC), measured in the same rounds as the two sides
   * and reported beside them; never part of the ratio.
   */
  anchors?: Side[];
  /** Extra results for the JSON (e.g. latency histograms), read after the last round. */
  details?(): Record<string, unknown>;
  close(): Promise<void>;
}

/** How a run was asked for. */
export interface RunSettings {
  rounds: number;
  warmup: number;
  /** Few rounds and small counts, for CI (under a minute for all figures). */
  short: boolean;
}

/** The per-metric result: both sides summarized and compared. */
export interface MetricResult extends MetricDef {
  a: Summary;
  b: Summary;
  /** a.median / b.median. */
  ratio: number;
  /** a.median - b.median, in the metric's unit. */
  delta: number;
}

/** One anchor's metrics (those it measured), summarized. */
export interface AnchorResult {
  label: string;
  metrics: Array<MetricDef & { summary: Summary; /** side A's median over the anchor's */ aOver: number }>;
}

/** The anchors' summaries by label and metric key, for verdicts. */
export type Anchors = Record<string, Record<string, Summary>>;

/** Whether a figure met its target, and the numbers that decided it. */
export interface Verdict {
  met: boolean;
  detail: string;
}

/** A benchmark figure: a name, the two sides, what is measured, rounds, the target and how to judge it. */
export interface Figure {
  /** Short name, also the file name of its results (`<name>.json`). */
  name: string;
  title: string;
  /** What one measurement is, in a sentence. */
  measures: string;
  /** The target, in words. */
  target: string;
  /** Labels of side A and side B (the ratio is A over B). */
  sides: [string, string];
  metrics: MetricDef[];
  /** Default rounds for a full run and for `--short`. */
  rounds: { full: number; short: number };
  prepare(env: BenchEnv, settings: RunSettings): Promise<Prepared>;
  verdict(metrics: Record<string, MetricResult>, anchors: Anchors): Verdict;
}

/** Everything a run of one figure produced; this is the JSON written per figure. */
export interface FigureResult {
  name: string;
  title: string;
  measures: string;
  target: string;
  sides: { a: string; b: string };
  rounds: number;
  warmup: number;
  short: boolean;
  /** The order the sides ran in, warm-up first, e.g. `["w:A","w:B","A","B","B","A"]`. */
  order: string[];
  startedAt: string;
  durationMs: number;
  host: { cpus: number; loadavg: number[]; node: string };
  metrics: MetricResult[];
  /** Limit anchors measured in the same rounds (empty where a figure has none). */
  anchors: AnchorResult[];
  details?: Record<string, unknown>;
  verdict: Verdict;
}

/** A round's name for the ids of what it makes: its number, or `w1`, `w2`... for the warm-up rounds (measured with -1, -2...). */
export function roundName(round: number): string {
  return round < 0 ? `w${-round}` : String(round);
}

/** Runs `each` on `items`, `batch` at a time (set-up and clean-up of many kernels or images without flooding Docker). */
export async function inBatches<T>(items: readonly T[], batch: number, each: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += batch) await Promise.all(items.slice(i, i + batch).map(each));
}

/** The order of sides in round `i`: A,B then B,A, alternately. */
export function roundOrder(i: number): Array<'A' | 'B'> {
  return roundSides(i, 0) as Array<'A' | 'B'>;
}

/**
 * The order of every side in round `i` with `anchors` anchors (`X1`, `X2`...):
 * A, B, the anchors, then all of it reversed in the next round, so that each
 * runs early in half of the rounds.
 */
export function roundSides(i: number, anchors: number): string[] {
  const all = ['A', 'B', ...Array.from({ length: anchors }, (_, k) => `X${k + 1}`)];
  return i % 2 === 0 ? all : all.reverse();
}

/** Runs one figure: prepare, warm up, interleaved rounds, summary, verdict; always closes what it prepared. */
export async function runFigure(
  fig: Figure,
  env: BenchEnv,
  settings: RunSettings,
  progress: (line: string) => void = () => {},
): Promise<FigureResult> {
  const started = Date.now();
  const prepared = await fig.prepare(env, settings);
  const anchorSides = prepared.anchors ?? [];
  const collected: Record<string, Record<string, number[]>> = {};
  const order: string[] = [];
  let details: Record<string, unknown> | undefined;
  try {
    const side = (s: string) => (s === 'A' ? prepared.a : s === 'B' ? prepared.b : anchorSides[Number(s.slice(1)) - 1]!);
    for (let w = 0; w < settings.warmup; w++) {
      for (const s of roundSides(w, anchorSides.length)) {
        await side(s).measure(-1 - w);
        order.push(`w:${s}`);
      }
    }
    for (let r = 0; r < settings.rounds; r++) {
      for (const s of roundSides(r, anchorSides.length)) {
        const samples = await side(s).measure(r);
        const into = (collected[s] ??= {});
        for (const [key, values] of Object.entries(samples)) (into[key] ??= []).push(...values);
        order.push(s);
      }
      progress(`${fig.name}: round ${r + 1}/${settings.rounds}`);
    }
    details = prepared.details?.();
  } finally {
    await prepared.close();
  }
  const metrics: MetricResult[] = fig.metrics.map((m) => {
    const a = summarize(collected.A?.[m.key] ?? []);
    const b = summarize(collected.B?.[m.key] ?? []);
    return { ...m, a, b, ratio: b.median === 0 ? NaN : a.median / b.median, delta: a.median - b.median };
  });
  const anchors: AnchorResult[] = anchorSides.map((side, k) => ({
    label: side.label,
    metrics: fig.metrics
      .filter((m) => collected[`X${k + 1}`]?.[m.key]?.length)
      .map((m) => {
        const summary = summarize(collected[`X${k + 1}`]![m.key]!);
        const a = metrics.find((x) => x.key === m.key)!.a;
        return { ...m, summary, aOver: summary.median === 0 ? NaN : a.median / summary.median };
      }),
  }));
  const anchorMap: Anchors = Object.fromEntries(
    anchors.map((x) => [x.label, Object.fromEntries(x.metrics.map((m) => [m.key, m.summary]))]),
  );
  return {
    name: fig.name,
    title: fig.title,
    measures: fig.measures,
    target: fig.target,
    sides: { a: fig.sides[0], b: fig.sides[1] },
    rounds: settings.rounds,
    warmup: settings.warmup,
    short: settings.short,
    order,
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    host: env.hostInfo(),
    metrics,
    anchors,
    ...(details ? { details } : {}),
    verdict: fig.verdict(Object.fromEntries(metrics.map((m) => [m.key, m])), anchorMap),
  };
}
