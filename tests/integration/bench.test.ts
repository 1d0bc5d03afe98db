/**
 * The benchmark suite's short form (`npm run bench -- --short`) runs to the
 * end against the real agent, aiozmq server, etcd and Docker, and writes
 * well-formed results. Timings are not asserted: they belong to the
 * benchmark, and this machine is shared. The suite measures the figures of
 * the agent's main paths (SUITE_FIGURES, about 25 s); `npm run drills`
 * (BENCH_TEST_FIGURES=all) every figure, as `npm run bench` does.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import { onCleanup, REPO_ROOT, requireEtcd, tempScratch } from '../helpers/env.js';
import { listChains } from '../../src/adapters/iptables.js';
import { CHAIN_PREFIX } from '../../src/containers/firewall.js';

/** Every figure the bench has, checked when BENCH_TEST_FIGURES=all. */
const FIGURES = [
  'rpc',
  'cold-create',
  'injected-create',
  'warm-create',
  'execute',
  'streaming',
  'burst-create',
  'burst-claims',
  'pool-freeze',
  'restart',
  'heartbeat',
  'density',
];

/**
 * The figures the suite measures: RPC, the cold create, execute and streaming; the others (the injected runner's
 * create, the warm pool's, restart, bursts, density) share their harness and run in `npm run drills`.
 */
const SUITE_FIGURES = ['rpc', 'cold-create', 'execute', 'streaming'];
const ALL = process.env.BENCH_TEST_FIGURES === 'all';
const CHECKED = ALL ? FIGURES : SUITE_FIGURES;

/** The limit anchors each figure measures beside its two sides. */
const ANCHORS: Record<string, string[]> = {
  rpc: ['bare zeromq.js echo', 'bare libzmq echo (C)', 'agent, TypeScript client'],
  streaming: ['bare forwarding hop', 'through the agent, AgentClient (text decoded)'],
};

interface Summary {
  n: number;
  median: number;
  p99: number;
}
interface Metric {
  key: string;
  a: Summary;
  b: Summary;
  ratio: number;
}
interface Anchor {
  label: string;
  metrics: Array<{ key: string; summary: Summary }>;
}
interface Result {
  name: string;
  sides: { a: string; b: string };
  order: string[];
  metrics: Metric[];
  anchors: Anchor[];
  verdict: { met: boolean; detail: string };
}

/** Runs the suite as `npm run bench` does (built), with `--short`, into `out`; resolves with the exit code and stderr. */
function runBench(out: string): Promise<{ code: number | string; stderr: string }> {
  const figures = ALL ? [] : ['--figures', SUITE_FIGURES.join(',')];
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist/bench/run.js'), '--short', ...figures, '--out', out], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | string; stderr: string }>((resolve) =>
    child.on('exit', (code, sig) => resolve({ code: code ?? sig ?? -1, stderr })),
  );
  // SIGINT makes the suite remove what it started; this only fires if the test gives up on it.
  onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT');
      await done;
    }
  });
  return done;
}

describe('benchmark suite (short form)', function () {
  this.timeout(300_000);
  before(requireEtcd);

  it(`measures ${ALL ? 'every figure' : 'the figures of the main paths'} on both sides and writes JSON, Markdown and SVG, leaving no container behind`, async () => {
    const out = await tempScratch();
    const { code, stderr } = await runBench(out);
    expect(code, stderr).to.equal(0);
    for (const name of CHECKED) {
      const r = JSON.parse(await fs.readFile(path.join(out, `${name}.json`), 'utf8')) as Result;
      expect(r.name).to.equal(name);
      expect(r.sides.a).to.be.a('string').and.not.equal(r.sides.b);
      expect(r.order.filter((s) => s === 'A')).to.have.length(r.order.filter((s) => s === 'B').length).and.not.empty;
      expect(r.metrics, name).to.not.be.empty;
      for (const m of r.metrics) {
        for (const side of [m.a, m.b]) {
          expect(side.n, `${name} ${m.key}`).to.be.greaterThan(0);
          // an idle agent's CPU over a few seconds may truly be nothing; every other figure is a time, size or rate
          if (/cpu$/i.test(m.key)) expect(side.median, `${name} ${m.key}`).to.be.at.least(0);
          else expect(side.median, `${name} ${m.key}`).to.be.greaterThan(0);
          expect(side.p99, `${name} ${m.key}`).to.be.at.least(side.median);
        }
        if (m.b.median > 0) {
          // a frozen pool's CPU is truly nothing, so its ratio may be 0
          expect(m.ratio, `${name} ${m.key}`).to.be.a('number').and.at.least(0);
          if (!/cpu$/i.test(m.key)) expect(m.ratio, `${name} ${m.key}`).to.be.greaterThan(0);
        }
      }
      for (const x of r.anchors) {
        expect(
          r.order.filter((s) => /^X\d+$/.test(s)),
          name,
        ).to.not.be.empty;
        expect(x.metrics, `${name} ${x.label}`).to.not.be.empty;
        for (const m of x.metrics) expect(m.summary.median, `${name} ${x.label} ${m.key}`).to.be.greaterThan(0);
      }
      if (name in ANCHORS)
        expect(
          r.anchors.map((x) => x.label),
          name,
        ).to.deep.equal(ANCHORS[name]);
      expect(r.verdict.met).to.be.a('boolean');
      expect(r.verdict.detail).to.be.a('string').and.not.empty;
      const md = await fs.readFile(path.join(out, `${name}.md`), 'utf8');
      expect(md).to.match(/^### /).and.include('| metric |').and.include(`${name}.svg`);
      expect(await fs.readFile(path.join(out, `${name}.svg`), 'utf8')).to.match(
        /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"[\s\S]*<\/svg>\n$/,
      );
    }
    const runId = /^bench: run (bench-[0-9a-f]+)/m.exec(stderr)?.[1];
    expect(runId, stderr).to.be.a('string');
    const docker = new Docker();
    expect(await docker.listContainers({ all: true, filters: { label: [`io.compute-agent.bench-run=${runId}`] } })).to.deep.equal([]);
    // the run's agents: i-<run id>, and i-<run id>-<variant> for the pooled, burst, restart and density agents
    const ours = (await docker.listContainers({ all: true, filters: { label: ['io.compute-agent.agent'] } })).filter((c) =>
      c.Labels['io.compute-agent.agent']!.startsWith(`i-${runId}`),
    );
    expect(ours.map((c) => c.Names[0])).to.deep.equal([]);
    // nor their kernel networks and firewall chains (the run kills its agents, which then cannot remove them)
    const networks = (await docker.listNetworks({ filters: { label: ['io.compute-agent.network'] } })).filter((n) =>
      (n.Labels?.['io.compute-agent.agent'] ?? '').startsWith(`i-${runId}`),
    );
    expect(networks.map((n) => n.Name)).to.deep.equal([]);
    const chains = (await listChains('filter')).filter((c) => c.startsWith(`${CHAIN_PREFIX}i-${runId!.slice(0, 10)}`));
    expect(chains).to.deep.equal([]);
  });
});
