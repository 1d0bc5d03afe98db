/**
 * `npm run bench`: runs the benchmark figures and writes, per figure,
 * `<name>.json`, `<name>.md` and `<name>.svg` to the results directory.
 *
 *   node dist/bench/run.js [--figures rpc,cold-create,execute] [--rounds N] [--warmup N] [--short] [--out DIR] [--readme]
 *
 * After a full run into bench/results/ (or with --readme), the performance
 * table of the manual (docs/performance.rst) is rewritten from every JSON there (bench/readme-table.ts).
 *
 * Everything the run starts (the agent, the reference server, containers)
 * is removed at the end, on failure, and on SIGINT/SIGTERM. Exit code 0 means
 * the figures were measured, whether or not their targets were met (the
 * verdicts are in the results); 1 means a figure could not be measured.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { errorMessage } from '../src/errors.js';
import { LABELS } from '../src/adapters/labels.js';
import { figures } from './figures/index.js';
import { runFigure, type FigureResult } from './harness.js';
import { BENCH_LABEL, BenchEnv, REPO_ROOT } from './lib/env.js';
import { writeReadmeTable } from './readme-table.js';
import { markdown, svg } from './report.js';

const DEFAULT_OUT = path.join(REPO_ROOT, 'bench/results');
const USAGE = `usage: npm run bench -- [--figures ${figures.map((f) => f.name).join(',')}] [--rounds N] [--warmup N] [--short] [--out DIR] [--readme]`;

function options() {
  const { values } = parseArgs({
    options: {
      figures: { type: 'string' },
      rounds: { type: 'string' },
      warmup: { type: 'string' },
      short: { type: 'boolean', default: false },
      readme: { type: 'boolean', default: false },
      out: { type: 'string', default: DEFAULT_OUT },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const count = (name: string, v: string | undefined, min: number) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} ${v} is not a whole number of at least ${min}`);
    return n;
  };
  const names = values.figures
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = names?.filter((n) => !figures.some((f) => f.name === n)) ?? [];
  if (unknown.length) throw new Error(`unknown figure ${unknown.join(', ')}: choose from ${figures.map((f) => f.name).join(', ')}`);
  return {
    selected: names ? figures.filter((f) => names.includes(f.name)) : figures,
    rounds: count('rounds', values.rounds, 1),
    warmup: count('warmup', values.warmup, 0),
    short: values.short,
    out: path.resolve(values.out),
    readme: values.readme,
  };
}

async function main(): Promise<number> {
  let o: ReturnType<typeof options>;
  try {
    o = options();
  } catch (err) {
    console.error(`bench: ${errorMessage(err)}\n${USAGE}`);
    return 2;
  }
  const env = new BenchEnv();
  console.error(`bench: run ${env.runId} (containers labelled ${BENCH_LABEL}=${env.runId} or ${LABELS.agent}=i-${env.runId})`);
  const stop = (sig: NodeJS.Signals) => {
    console.error(`bench: ${sig}: removing what the run started`);
    void env.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await fs.mkdir(o.out, { recursive: true });
  const results: FigureResult[] = [];
  try {
    for (const fig of o.selected) {
      const settings = {
        rounds: o.rounds ?? (o.short ? fig.rounds.short : fig.rounds.full),
        warmup: o.warmup ?? (o.short ? 0 : 1),
        short: o.short,
      };
      console.error(`bench: ${fig.name}: ${settings.rounds} rounds after ${settings.warmup} warm-up`);
      const r = await runFigure(fig, env, settings, (line) => console.error(`bench: ${line}`));
      results.push(r);
      await fs.writeFile(path.join(o.out, `${r.name}.json`), JSON.stringify(r, null, 2) + '\n');
      await fs.writeFile(path.join(o.out, `${r.name}.md`), markdown(r));
      await fs.writeFile(path.join(o.out, `${r.name}.svg`), svg(r));
      console.log(markdown(r));
    }
  } catch (err) {
    console.error(`bench: ${errorMessage(err)}`);
    return 1;
  } finally {
    await env.close();
  }
  console.error(`bench: wrote ${results.map((r) => r.name).join(', ')} to ${o.out}`);
  // The manual's table (docs/performance.rst) shows the checked-in results: rewritten after a full run into them, or when asked (--readme).
  if (o.readme || (!o.short && o.out === DEFAULT_OUT)) {
    await writeReadmeTable(
      o.out,
      path.join(REPO_ROOT, 'docs/performance.rst'),
      figures.map((f) => f.name),
    );
    console.error('bench: rewrote the performance table of docs/performance.rst from the results');
  }
  return 0;
}

const code = await main();
process.exitCode = code;
// A socket or client left open must not keep a finished run alive.
setTimeout(() => process.exit(code), 2000).unref();
