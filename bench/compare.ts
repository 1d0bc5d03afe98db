/**
 * Compares two runs of the bench, figure by figure: each metric's median of
 * side A and side B (and of every anchor) in run 1 and run 2, and how far
 * run 2 is from run 1, so that two full runs can be checked to agree within
 * noise.
 *
 *   npm run bench -- --out /tmp/bench-1 && npm run bench -- --out /tmp/bench-2
 *   node dist/bench/compare.js /tmp/bench-1 /tmp/bench-2 [--tolerance 10]
 *
 * Prints a Markdown table; a row whose difference exceeds the tolerance (in
 * percent, default 10) is marked `!`, and so is a figure whose verdict
 * differs. Exits 0 either way (a shared machine is noisy: the table is for
 * reading), 2 on bad arguments.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { FigureResult } from './harness.js';
import { readResults } from './readme-table.js';
import { fmt } from './report.js';

/** One compared value: what, its median in each run, and the difference of run 2 from run 1 in percent. */
export interface Compared {
  figure: string;
  what: string;
  first: number;
  second: number;
  diffPercent: number;
  beyond: boolean;
}

/** The medians of both runs for every figure both have, side by side. */
export function compareRuns(first: FigureResult[], second: FigureResult[], tolerancePercent: number): Compared[] {
  const out: Compared[] = [];
  const row = (figure: string, what: string, x: number, y: number) => {
    const diffPercent = x === 0 ? (y === 0 ? 0 : Infinity) : ((y - x) / Math.abs(x)) * 100;
    out.push({ figure, what, first: x, second: y, diffPercent, beyond: !(Math.abs(diffPercent) <= tolerancePercent) });
  };
  for (const r1 of first) {
    const r2 = second.find((r) => r.name === r1.name);
    if (!r2) continue;
    for (const m1 of r1.metrics) {
      const m2 = r2.metrics.find((m) => m.key === m1.key);
      if (!m2) continue;
      const unit = `${m1.label} (${m1.unit})`;
      row(r1.name, `${unit}, ${r1.sides.a}`, m1.a.median, m2.a.median);
      row(r1.name, `${unit}, ${r1.sides.b}`, m1.b.median, m2.b.median);
      for (const x1 of r1.anchors ?? []) {
        const am1 = x1.metrics.find((m) => m.key === m1.key);
        const am2 = r2.anchors?.find((x) => x.label === x1.label)?.metrics.find((m) => m.key === m1.key);
        if (am1 && am2) row(r1.name, `${unit}, ${x1.label}`, am1.summary.median, am2.summary.median);
      }
    }
  }
  return out;
}

/** The comparison as a Markdown table, with the verdicts of both runs per figure. */
export function comparisonTable(first: FigureResult[], second: FigureResult[], tolerancePercent: number): string {
  const rows = compareRuns(first, second, tolerancePercent);
  const verdict = (r: FigureResult | undefined) => (r ? (r.verdict.met ? 'met' : 'not met') : 'absent');
  const lines = [
    `| figure | median of | run 1 | run 2 | run 2 vs 1 | beyond ${tolerancePercent}% |`,
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const c of rows)
    lines.push(
      `| ${c.figure} | ${c.what} | ${fmt(c.first)} | ${fmt(c.second)} | ${c.diffPercent >= 0 ? '+' : ''}${c.diffPercent.toFixed(1)}% | ${c.beyond ? '!' : ''} |`,
    );
  const names = [...new Set([...first, ...second].map((r) => r.name))];
  lines.push('', '| figure | verdict, run 1 | verdict, run 2 | |', '| --- | --- | --- | --- |');
  for (const n of names) {
    const a = verdict(first.find((r) => r.name === n));
    const b = verdict(second.find((r) => r.name === n));
    lines.push(`| ${n} | ${a} | ${b} | ${a === b ? '' : '!'} |`);
  }
  return lines.join('\n') + '\n';
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({ options: { tolerance: { type: 'string', default: '10' } }, allowPositionals: true });
  const tolerance = Number(values.tolerance);
  if (positionals.length !== 2 || !(tolerance >= 0)) {
    console.error('usage: node dist/bench/compare.js RESULTS_DIR_1 RESULTS_DIR_2 [--tolerance PERCENT]');
    process.exit(2);
  }
  const { figures } = await import('./figures/index.js');
  const names = figures.map((f) => f.name);
  const [first, second] = await Promise.all(positionals.map((d) => readResults(path.resolve(d), names)));
  process.stdout.write(comparisonTable(first!, second!, tolerance));
}
