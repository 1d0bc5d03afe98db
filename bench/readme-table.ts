/**
 * The performance table of the manual (docs/performance.rst; the file was
 * README.rst before the manual), written from the figures' JSON (never
 * typed by hand): one row per headline metric of each figure (both sides'
 * median and tail, the ratio, the verdict on the figure's first row) and one
 * per limit anchor of those metrics (side A against the anchor), between the
 * two marker comments of its *Performance* chapter.
 *
 *   node dist/bench/readme-table.js [--results DIR] [--readme FILE]
 *
 * regenerates it from the JSON already there; `npm run bench` does the same
 * after a full run into bench/results/.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { FigureResult, MetricResult } from './harness.js';
import { fmt, tail, tailOf } from './report.js';

export const BEGIN = '.. bench-table-begin (written by npm run bench from bench/results/*.json: do not edit by hand)';
export const END = '.. bench-table-end';

/** The metric keys of a figure that go into the README (all of them where a figure names none). */
export const HEADLINES: Record<string, string[]> = {
  rpc: ['throughput@1', 'throughput@128', 'latency@128', 'cpu@128'],
};

/** Cell text safe in a reStructuredText simple table: literal where it has markup characters. */
function cell(s: string): string {
  return /[`*|\\]|_(\s|$)/.test(s) ? `\`\`${s.replace(/`/g, "'")}\`\`` : s;
}

/** The rows of one figure: [figure, metric, A, B or anchor, ratio, verdict]. */
function rows(r: FigureResult): string[][] {
  const keys = HEADLINES[r.name] ?? r.metrics.map((m) => m.key);
  const picked = r.metrics.filter((m) => keys.includes(m.key));
  const both = (m: MetricResult, side: 'a' | 'b') => `${fmt(m[side].median)} / ${tail(m, side).name} ${fmt(tail(m, side).value)}`;
  const out: string[][] = [];
  for (const m of picked) {
    out.push([
      r.name,
      `${m.label} (${m.unit})`,
      both(m, 'a'),
      `${both(m, 'b')} (${r.sides.b})`,
      fmt(m.ratio),
      out.length ? '' : r.verdict.met ? 'met' : 'not met',
    ]);
    for (const x of r.anchors ?? []) {
      const am = x.metrics.find((y) => y.key === m.key);
      if (!am) continue;
      const t = tailOf(am.summary, am.better);
      out.push([r.name, `vs ${x.label}`, fmt(m.a.median), `${fmt(am.summary.median)} / ${t.name} ${fmt(t.value)}`, fmt(am.aOver), '']);
    }
  }
  return out.map((row) => row.map(cell));
}

/** The generated block (markers included): when and how each figure was measured, then the table. */
export function performanceTable(results: FigureResult[]): string {
  const header = ['figure', 'metric (unit)', 'A median / tail', 'B (or anchor) median / tail', 'ratio', 'target'];
  const body = results.flatMap(rows);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (row: string[]) =>
    row
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '='.repeat(w)).join('  ');
  const runs = results.map(
    (r) =>
      `- \`\`${r.name}\`\`: ${r.short ? 'a short run (not a figure to quote), ' : ''}${r.rounds} rounds, started ${r.startedAt}, ` +
      `${(r.durationMs / 1000).toFixed(0)} s, load average ${r.host.loadavg.join(' ')} on ${r.host.cpus} cores; ${r.verdict.met ? 'met' : 'not met'}: ${r.verdict.detail.replace(/[`*|\\]/g, '')}`,
  );
  return [
    BEGIN,
    '',
    'Tail: p99 of times, p1 of rates. Ratio: A over B, or A over the anchor on a ``vs`` row. The runs:',
    '',
    ...runs,
    '',
    rule,
    line(header),
    rule,
    ...body.map(line),
    rule,
    '',
    END,
  ].join('\n');
}

/** README text with the block between the markers replaced; fails if the markers are missing. */
export function spliceTable(readme: string, block: string): string {
  const b = readme.indexOf(BEGIN);
  const e = readme.indexOf(END, b);
  if (b < 0 || e < 0) throw new Error(`the performance table's file has no "${BEGIN.slice(0, 24)}..." / "${END}" markers`);
  return readme.slice(0, b) + block + readme.slice(e + END.length);
}

/** Reads every figure's JSON in `dir`, in the order of `names` where given (others after, by name). */
export async function readResults(dir: string, names: string[] = []): Promise<FigureResult[]> {
  const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  const results: FigureResult[] = [];
  for (const f of files) {
    const r = JSON.parse(await fs.readFile(path.join(dir, f), 'utf8')) as FigureResult;
    if (typeof r.name === 'string' && Array.isArray(r.metrics) && r.verdict) results.push(r);
  }
  const rank = (n: string) => (names.includes(n) ? names.indexOf(n) : names.length);
  return results.sort((x, y) => rank(x.name) - rank(y.name) || x.name.localeCompare(y.name));
}

/** Rewrites the README's table from the results in `dir`. */
export async function writeReadmeTable(dir: string, readmePath: string, names: string[] = []): Promise<void> {
  const results = await readResults(dir, names);
  const readme = await fs.readFile(readmePath, 'utf8');
  await fs.writeFile(readmePath, spliceTable(readme, performanceTable(results)));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const { values } = parseArgs({ options: { results: { type: 'string' }, readme: { type: 'string' } } });
  const { figures } = await import('./figures/index.js');
  await writeReadmeTable(
    values.results ?? path.join(root, 'bench/results'),
    values.readme ?? path.join(root, 'docs/performance.rst'),
    figures.map((f) => f.name),
  );
  console.error('bench: rewrote the performance table of docs/performance.rst');
}
