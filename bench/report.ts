/**
 * The human side of a figure's result: a short Markdown table and a
 * hand-written SVG chart (per metric, the median and p99 of both sides as
 * horizontal bars; for rates the p1 instead of the p99, the bad end).
 */
import type { Better, FigureResult, MetricResult } from './harness.js';
import type { Summary } from './lib/stats.js';

/** A number with about three significant digits, for tables and labels. */
export function fmt(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString('en-US');
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toFixed(3);
}

/** The bad tail of a metric: p99 where lower is better (times), p1 where higher is better (rates). */
export function tail(m: MetricResult, side: 'a' | 'b'): { name: string; value: number } {
  return tailOf(m[side], m.better);
}

/** The bad tail of one summary. */
export function tailOf(s: Summary, better: Better): { name: string; value: number } {
  return better === 'lower' ? { name: 'p99', value: s.p99 } : { name: 'p1', value: s.p1 };
}

/** The Markdown of one figure: title, what and target, the table, the verdict, the chart. */
export function markdown(r: FigureResult): string {
  const { a, b } = r.sides;
  const rows = r.metrics.map(
    (m) =>
      `| ${m.label} | ${m.unit} | ${fmt(m.a.median)} | ${tail(m, 'a').name} ${fmt(tail(m, 'a').value)} | ${fmt(m.b.median)} | ${tail(m, 'b').name} ${fmt(tail(m, 'b').value)} | ${fmt(m.ratio)} | ${m.a.n} / ${m.b.n} |`,
  );
  return [
    `### ${r.title}`,
    '',
    `Measures ${r.measures}. Target: ${r.target}.`,
    '',
    `| metric | unit | ${a} median | ${a} tail | ${b} median | ${b} tail | ratio (median) | samples |`,
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
    '',
    'Tail: p99 of times, p1 of rates (one rate per round), so each is the bad end. Ratio: the first side over the second.',
    '',
    ...anchorTable(r),
    `**Target ${r.verdict.met ? 'met' : 'not met'}**: ${r.verdict.detail}.`,
    '',
    `${r.rounds} rounds (A,B then B,A alternately) after ${r.warmup} warm-up round(s)${r.short ? ', short run' : ''}; ` +
      `started ${r.startedAt}, took ${(r.durationMs / 1000).toFixed(1)} s on ${r.host.cpus} cores, load average ${r.host.loadavg.join(' ')}.`,
    '',
    `![${r.name}](${r.name}.svg)`,
    '',
  ].join('\n');
}

/** The limit anchors of a figure as a table (nothing where it has none). */
function anchorTable(r: FigureResult): string[] {
  const rows = (r.anchors ?? []).flatMap((x) =>
    x.metrics.map((m) => {
      const t = tailOf(m.summary, m.better);
      return `| ${x.label} | ${m.label} | ${m.unit} | ${fmt(m.summary.median)} | ${t.name} ${fmt(t.value)} | ${fmt(m.aOver)} |`;
    }),
  );
  if (!rows.length) return [];
  return [
    `Limit anchors, measured in the same rounds (${r.sides.a} over the anchor in the last column):`,
    '',
    '| anchor | metric | unit | median | tail | ratio (median) |',
    '| --- | --- | --- | ---: | ---: | ---: |',
    ...rows,
    '',
  ];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

const COLORS = { a: '#2b6cb0', b: '#c05621' };
const WIDTH = 640;
const LABEL_W = 200;
const BAR_H = 14;
const PANEL_H = 24 + 4 * (BAR_H + 4) + 10;

/** One panel: the metric's title and four bars (A median, A p99, B median, B p99) on one scale. */
function panel(r: FigureResult, m: MetricResult, y: number): string {
  const [ta, tb] = [tail(m, 'a'), tail(m, 'b')];
  const max = Math.max(ta.value, tb.value, m.a.median, m.b.median) || 1;
  const scale = (WIDTH - LABEL_W - 60) / max;
  const bars = [
    [`${r.sides.a} median`, m.a.median, COLORS.a, 1],
    [`${r.sides.a} ${ta.name}`, ta.value, COLORS.a, 0.45],
    [`${r.sides.b} median`, m.b.median, COLORS.b, 1],
    [`${r.sides.b} ${tb.name}`, tb.value, COLORS.b, 0.45],
  ] as const;
  const out = [`<text x="8" y="${y + 16}" font-weight="bold">${esc(`${m.label} (${m.unit}, ${m.better} is better)`)}</text>`];
  bars.forEach(([label, v, color, opacity], i) => {
    const by = y + 24 + i * (BAR_H + 4);
    const w = Number.isFinite(v) ? Math.max(1, v * scale) : 0;
    out.push(
      `<text x="${LABEL_W - 6}" y="${by + BAR_H - 3}" text-anchor="end">${esc(label)}</text>`,
      `<rect x="${LABEL_W}" y="${by}" width="${w.toFixed(1)}" height="${BAR_H}" fill="${color}" fill-opacity="${opacity}"/>`,
      `<text x="${(LABEL_W + w + 4).toFixed(1)}" y="${by + BAR_H - 3}">${esc(fmt(v))}</text>`,
    );
  });
  return out.join('\n');
}

/** The SVG chart of one figure: one panel per metric, stacked. */
export function svg(r: FigureResult): string {
  const height = 34 + r.metrics.length * PANEL_H + 36;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="8" y="20" font-size="13" font-weight="bold">${esc(r.title)}</text>`,
    ...r.metrics.map((m, i) => panel(r, m, 30 + i * PANEL_H)),
    `<text x="8" y="${height - 22}" fill="#555">${esc(`Target: ${r.target}.`)}</text>`,
    `<text x="8" y="${height - 8}" fill="#555">${esc(`${r.verdict.met ? 'Met' : 'Not met'}; measured ${r.startedAt}${r.short ? ' (short run)' : ''}.`)}</text>`,
    '</svg>',
    '',
  ];
  return parts.join('\n');
}
