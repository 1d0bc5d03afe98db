/**
 * The pure parts of the benchmark suite: order statistics, the interleaving
 * of sides, `docker port` parsing, free ports, and the Markdown and SVG of a
 * result.
 */
import { expect } from 'chai';
import { parseDockerPort } from '../../bench/figures/cold-create.js';
import { poolCounts } from '../../bench/figures/warm-create.js';
import { roundOrder, roundSides, type FigureResult, type MetricResult } from '../../bench/harness.js';
import { readFileSync } from 'node:fs';
import { freePort } from '../../bench/lib/ports.js';
import { median, quantile, summarize } from '../../bench/lib/stats.js';
import { markdown, svg, tail } from '../../bench/report.js';
import { BEGIN, END, HEADLINES, performanceTable, readResults, spliceTable } from '../../bench/readme-table.js';
import { figures } from '../../bench/figures/index.js';
import { compareRuns, comparisonTable } from '../../bench/compare.js';
import { decodeSkipping, Skipped } from '../../bench/lib/counting-codec.js';
import { msgpackCodec } from '../../src/wire/codec.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const metric = (over: Partial<MetricResult>): MetricResult => ({
  key: 'latency',
  label: 'latency <1>',
  unit: 'ms',
  better: 'lower',
  a: summarize([1, 2, 3]),
  b: summarize([2, 4, 6]),
  ratio: 0.5,
  delta: -2,
  ...over,
});

const result = (metrics: MetricResult[]): FigureResult => ({
  name: 'demo',
  title: 'A & B',
  measures: 'things',
  target: 'A under B',
  sides: { a: 'agent', b: 'ref' },
  rounds: 2,
  warmup: 1,
  short: true,
  order: ['w:A', 'w:B', 'A', 'B', 'B', 'A'],
  startedAt: '2026-01-01T00:00:00.000Z',
  durationMs: 1234,
  host: { cpus: 2, loadavg: [1, 1, 1], node: 'v20' },
  metrics,
  anchors: [],
  verdict: { met: true, detail: 'fine' },
});

describe('benchmark suite parts', () => {
  it('takes quantiles by nearest rank and medians as the middle value or the mean of the two middle ones', () => {
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(quantile(hundred, 0.99)).to.equal(99);
    expect(quantile(hundred, 0.01)).to.equal(1);
    expect(quantile([5], 0.99)).to.equal(5);
    expect(quantile([], 0.5)).to.be.NaN;
    expect(median([1, 2, 3])).to.equal(2);
    expect(median([1, 2, 3, 10])).to.equal(2.5);
    expect(summarize([3, 1, 2])).to.deep.equal({ n: 3, min: 1, p1: 1, median: 2, p99: 3, max: 3 });
  });

  it('hands out free ports below the ephemeral range, never the same one twice', async () => {
    const ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]);
    const ports = await Promise.all(Array.from({ length: 50 }, () => freePort()));
    expect(new Set(ports).size).to.equal(50);
    for (const p of ports) expect(p).to.be.below(ephemeralLow);
  });

  it('alternates the sides A,B then B,A so that each side runs first in half the rounds', () => {
    const order = [0, 1, 2, 3].flatMap(roundOrder);
    expect(order.join('')).to.equal('ABBAABBA');
  });

  it('puts the anchors after A and B, and reverses all of it every other round', () => {
    expect(roundSides(0, 2)).to.deep.equal(['A', 'B', 'X1', 'X2']);
    expect(roundSides(1, 2)).to.deep.equal(['X2', 'X1', 'B', 'A']);
    expect(roundSides(3, 0)).to.deep.equal(['B', 'A']);
  });

  it('reads the host ports of docker port output, the first binding of each container port', () => {
    const out = '2000/tcp -> 127.0.0.1:49153\n2001/tcp -> 127.0.0.1:49154\n2001/tcp -> [::1]:49999\n2003/tcp -> 127.0.0.1:49156\n';
    expect([...parseDockerPort(out)]).to.deep.equal([
      [2000, 49153],
      [2001, 49154],
      [2003, 49156],
    ]);
    expect(parseDockerPort('').size).to.equal(0);
  });

  it("sums the idle and creating pooled containers of the agent's metrics", () => {
    const text = [
      '# HELP compute_agent_pool_containers Pooled containers',
      'compute_agent_pool_containers{image="python:3-debian",type="small",state="idle"} 2',
      'compute_agent_pool_containers{image="python:3-debian",type="large",state="idle"} 1',
      'compute_agent_pool_containers{image="python:3-debian",type="small",state="creating"} 1',
      'compute_agent_pool_containers{image="python:3-debian",type="small",state="claimed"} 5',
    ].join('\n');
    expect(poolCounts(text)).to.deep.equal({ idle: 3, creating: 1 });
    expect(poolCounts('')).to.deep.equal({ idle: 0, creating: 0 });
  });

  it('reports the bad tail of each metric: p99 of times, p1 of rates', () => {
    expect(tail(metric({}), 'a')).to.deep.equal({ name: 'p99', value: 3 });
    expect(tail(metric({ better: 'higher', a: summarize([10, 20, 30]) }), 'a')).to.deep.equal({ name: 'p1', value: 10 });
  });

  it('writes a Markdown table and an escaped SVG with one panel per metric', () => {
    const r = result([metric({}), metric({ key: 'rate', label: 'rate', unit: 'req/s', better: 'higher' })]);
    const md = markdown(r);
    expect(md).to.match(/^### A & B\n/);
    expect(md).to.include('| latency <1> | ms | 2.00 | p99 3.00 | 4.00 | p99 6.00 | 0.500 | 3 / 3 |');
    expect(md).to.include('| rate | req/s | 2.00 | p1 1.00 |');
    expect(md).to.include('**Target met**: fine.').and.include('![demo](demo.svg)');
    const image = svg(r);
    expect(image).to.match(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    expect(image).to.include('A &amp; B').and.include('latency &lt;1&gt;').and.not.include('<1>');
    expect(image.match(/<rect x=/g)).to.have.length(8);
  });

  it('lists the limit anchors under the table, with side A over each anchor', () => {
    const m = metric({ key: 'rate', label: 'rate', unit: 'req/s', better: 'higher', a: summarize([40, 50, 60]) });
    const r = {
      ...result([m]),
      anchors: [
        {
          label: 'bare echo',
          metrics: [
            { key: 'rate', label: 'rate', unit: 'req/s', better: 'higher' as const, summary: summarize([90, 100, 110]), aOver: 0.5 },
          ],
        },
      ],
    };
    const md = markdown(r);
    expect(md).to.include('| anchor | metric |').and.include('| bare echo | rate | req/s | 100 | p1 90.0 | 0.500 |');
    expect(markdown(result([m]))).to.not.include('| anchor |');
  });

  it("writes the README's table from results: every metric, a vs row per anchor, markup made literal, between the markers", () => {
    const m = metric({ key: 'rate', label: 'rate', unit: 'req/s', better: 'higher', a: summarize([40, 50, 60]) });
    const r = {
      ...result([m, metric({ label: 'execute `x=1`' })]),
      anchors: [
        {
          label: 'bare_ echo',
          metrics: [{ key: 'rate', label: 'rate', unit: 'req/s', better: 'higher' as const, summary: summarize([100]), aOver: 0.5 }],
        },
      ],
    };
    const block = performanceTable([r]);
    expect(block.startsWith(BEGIN) && block.endsWith(END)).to.equal(true);
    const body = block.split('\n').filter((l) => l.startsWith('demo '));
    expect(body).to.have.length(3);
    expect(body[0]).to.match(/^demo +rate \(req\/s\) +50\.0 \/ p1 40\.0 +4\.00 \/ p1 2\.00 \(ref\) +0\.500 +met$/);
    expect(body[1]).to.match(/^demo +``vs bare_ echo`` +50\.0 +100 \/ p1 100 +0\.500$/);
    expect(body[2]).to.include("``execute 'x=1' (ms)``");
    const readme = `title\n\n${BEGIN}\nold table\n${END}\n\nafter\n`;
    expect(spliceTable(readme, block)).to.equal(`title\n\n${block}\n\nafter\n`);
    expect(() => spliceTable('no markers', block)).to.throw(/markers/);
  });

  it('compares two runs: every median of both sides and the anchors, the difference in percent, rows beyond the tolerance and verdicts that differ', () => {
    const anchor = (median: number) => [
      {
        label: 'hop',
        metrics: [{ key: 'latency', label: 'latency <1>', unit: 'ms', better: 'lower' as const, summary: summarize([median]), aOver: 1 }],
      },
    ];
    const one = { ...result([metric({ a: summarize([10]), b: summarize([20]) })]), anchors: anchor(5) };
    const two = {
      ...result([metric({ a: summarize([10.5]), b: summarize([30]) })]),
      anchors: anchor(5),
      verdict: { met: false, detail: 'worse' },
    };
    const rows = compareRuns([one], [two], 10);
    expect(rows.map((r) => [r.what, r.first, r.second, Math.round(r.diffPercent), r.beyond])).to.deep.equal([
      ['latency <1> (ms), agent', 10, 10.5, 5, false],
      ['latency <1> (ms), ref', 20, 30, 50, true],
      ['latency <1> (ms), hop', 5, 5, 0, false],
    ]);
    const table = comparisonTable([one], [two, { ...one, name: 'other' }], 10);
    expect(table).to.include('| demo | latency <1> (ms), ref | 20.0 | 30.0 | +50.0% | ! |');
    expect(table).to.include('| demo | met | not met | ! |').and.include('| other | absent | met | ! |');
  });

  it("gives every figure of the suite rows in the README's table once its JSON is in the results, in the suite's order", async () => {
    // Every headline the table picks is a metric its figure measures.
    for (const [name, keys] of Object.entries(HEADLINES)) {
      const fig = figures.find((f) => f.name === name);
      expect(fig, name).to.not.equal(undefined);
      for (const k of keys)
        expect(
          fig!.metrics.map((m) => m.key),
          `${name} ${k}`,
        ).to.include(k);
    }
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-table-'));
    try {
      // Written in reverse, so that the order must come from the suite, not from the files.
      for (const fig of [...figures].reverse()) {
        const r = { ...result(fig.metrics.map((m) => metric({ ...m }))), name: fig.name };
        writeFileSync(path.join(dir, `${fig.name}.json`), JSON.stringify(r));
      }
      writeFileSync(path.join(dir, 'not-a-result.json'), '{"x": 1}');
      const results = await readResults(
        dir,
        figures.map((f) => f.name),
      );
      expect(results.map((r) => r.name)).to.deep.equal(figures.map((f) => f.name));
      const lines = performanceTable(results).split('\n');
      for (const fig of figures) {
        const keys = HEADLINES[fig.name] ?? fig.metrics.map((m) => m.key);
        const rows = lines.filter((l) => l.startsWith(`${fig.name} `));
        expect(rows, fig.name).to.have.length(keys.length);
        expect(
          lines.filter((l) => l.startsWith(`- \`\`${fig.name}\`\`:`)),
          fig.name,
        ).to.have.length(1);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reads replies as the agent packs them, long texts by their length only (the streaming figure's counting codec)", () => {
    const small = {
      status: 'continued',
      runId: 'r-1',
      exitCode: -1,
      big: 2 ** 40,
      neg: -70000,
      f: 0.5,
      ok: true,
      none: null,
      list: [1, [2, 'x']],
      bytes: Buffer.from('ab'),
    };
    expect(decodeSkipping(msgpackCodec.encode(small))).to.deep.equal(msgpackCodec.decode(msgpackCodec.encode(small)));
    const text = 'é'.repeat(40_000); // 80,000 bytes of UTF-8: a str 32 header
    const out = decodeSkipping(
      msgpackCodec.encode({
        console: [
          ['stdout', text],
          ['stderr', 'short'],
        ],
        blob: Buffer.alloc(300),
      }),
    ) as {
      console: Array<[string, unknown]>;
      blob: unknown;
    };
    expect(out.console[0]![1]).to.be.instanceOf(Skipped);
    expect((out.console[0]![1] as Skipped).byteLength).to.equal(80_000);
    expect(out.console[1]).to.deep.equal(['stderr', 'short']);
    expect((out.blob as Skipped).byteLength).to.equal(300);
    const packed = msgpackCodec.encode(['x'.repeat(1000)]);
    expect(() => decodeSkipping(packed.subarray(0, packed.length - 1))).to.throw(/truncated/);
    expect(() => decodeSkipping(Buffer.concat([packed, Buffer.from([0xc0])]))).to.throw(/after the msgpack value/);
  });
});
