/**
 * Figure 1, RPC: `ping` through the agent against a stock aiozmq.rpc server
 * (bench/reference/aiozmq_server.py on Debian's python3-aiozmq) serving the
 * same `ping` with the same framing, at 1, 16 and 128 calls in flight. The
 * load comes from bench/native/zmq-load.c (C on libzmq, requests encoded
 * once), which costs next to nothing beside the servers it drives.
 *
 * Anchors, measured in the same rounds: a bare zeromq.js ROUTER echo
 * (bench/lib/zmq-echo.ts: the limit of our socket library) and a bare
 * libzmq ROUTER echo in C (bench/native/zmq-echo.c: the limit of this
 * machine's ZeroMQ), both driven by the same C client; and the agent driven
 * by the TypeScript client (AgentClient, src/rpc/client.ts), which manager
 * authors use, as a second, labelled load generator. Every server's CPU per
 * request (all its threads, from /proc) is reported beside its rate: it is
 * stable where throughput on two shared cores is not.
 */
import path from 'node:path';
import { AgentClient } from '../../src/rpc/client.js';
import type { Figure, MetricDef, Samples, Side } from '../harness.js';
import { cLoad, type CLoadResult } from '../lib/cload.js';
import { REPO_ROOT, type BenchEnv } from '../lib/env.js';
import { drive } from '../lib/load.js';
import { nativeProgram } from '../lib/native.js';
import { freePort } from '../lib/ports.js';
import { cpuNs } from '../lib/proc.js';

/** Debian's python, which has python3-aiozmq (the pyenv one on PATH does not). */
const PYTHON = process.env.BENCH_PYTHON ?? '/usr/bin/python3';
const SERVER = path.join(REPO_ROOT, 'bench/reference/aiozmq_server.py');
const JS_ECHO = path.join(REPO_ROOT, 'dist/bench/lib/zmq-echo.js');
export const LEVELS = [1, 16, 128] as const;

const metrics: MetricDef[] = LEVELS.flatMap((n) => [
  { key: `throughput@${n}`, label: `throughput, ${n} in flight`, unit: 'req/s', better: 'higher' as const },
  { key: `latency@${n}`, label: `latency, ${n} in flight`, unit: 'ms', better: 'lower' as const },
  { key: `cpu@${n}`, label: `server CPU per request, ${n} in flight`, unit: 'µs/req', better: 'lower' as const },
]);

/** The anchors' labels (the verdict reads them). */
export const ANCHOR = {
  zmqjs: 'bare zeromq.js echo',
  libzmq: 'bare libzmq echo (C)',
  tsClient: 'agent, TypeScript client',
} as const;

/** Latency histograms merged over the rounds, per side and level: [lower µs, upper µs, count]. */
type Histograms = Record<string, Record<string, Array<[number, number, number]>>>;

function merge(into: Histograms, label: string, n: number, r: CLoadResult): void {
  const level = ((into[label] ??= {})[String(n)] ??= []);
  for (const [lo, hi, count] of r.histogram) {
    const at = level.find((b) => b[0] === lo);
    if (at) at[2] += count;
    else level.push([lo, hi, count]);
  }
  level.sort((x, y) => x[0] - y[0]);
}

/** A server at `endpoint` (process `pid`) driven by the C load generator. */
function cSide(label: string, endpoint: string, pid: number, burstMs: number, hist: Histograms): Side {
  return {
    label,
    async measure(round) {
      const out: Samples = {};
      for (const n of LEVELS) {
        const c0 = await cpuNs(pid);
        const r = await cLoad(endpoint, n, burstMs);
        const cpuUs = ((await cpuNs(pid)) - c0) / 1000;
        out[`throughput@${n}`] = [r.rate];
        out[`latency@${n}`] = r.samplesUs.map((us) => us / 1000);
        out[`cpu@${n}`] = [cpuUs / r.completed];
        if (round >= 0) merge(hist, label, n, r);
      }
      return out;
    },
  };
}

/** The agent driven by AgentClient, the TypeScript load generator (bench/lib/load.ts). */
function tsSide(label: string, client: AgentClient, pid: number, burstMs: number): Side {
  const call = () => client.callRaw('ping', ['ping'], {}, 10_000);
  return {
    label,
    async measure() {
      const out: Samples = {};
      for (const n of LEVELS) {
        const c0 = await cpuNs(pid);
        const r = await drive(call, n, burstMs);
        const cpuUs = ((await cpuNs(pid)) - c0) / 1000;
        out[`throughput@${n}`] = [r.rate];
        out[`latency@${n}`] = r.latenciesMs;
        out[`cpu@${n}`] = [cpuUs / r.latenciesMs.length];
      }
      return out;
    },
  };
}

/** Starts a server child that prints "ready"; resolves with its endpoint and pid. */
async function server(env: BenchEnv, cmd: string, args: (endpoint: string) => string[]): Promise<{ endpoint: string; pid: number }> {
  const endpoint = `tcp://127.0.0.1:${await freePort()}`;
  const child = env.spawnChild(cmd, args(endpoint));
  await env.waitForOutput(child, /ready/);
  return { endpoint, pid: child.proc.pid! };
}

export const rpcFigure: Figure = {
  name: 'rpc',
  title: 'RPC: ping through the agent vs a reference aiozmq.rpc server',
  measures:
    'requests per second (one value per round and level), the latency of the pings (up to 2,000 per burst, taken evenly) and the ' +
    "server's CPU per request, with 1, 16 and 128 pings kept in flight by a C client on libzmq",
  target: "at 128 in flight, at least 3x the reference's throughput and at least 90% of the bare zeromq.js echo's",
  sides: ['agent', 'aiozmq.rpc reference'],
  metrics,
  rounds: { full: 10, short: 2 },
  async prepare(env, settings) {
    const burstMs = settings.short ? 150 : 700;
    await nativeProgram('zmq-load');
    const agent = await env.agent();
    const ref = await server(env, PYTHON, (e) => [SERVER, e]);
    const jsEcho = await server(env, process.execPath, (e) => [JS_ECHO, e]);
    const cEcho = await server(env, await nativeProgram('zmq-echo'), (e) => [e]);
    // The agent's client is shared with other figures; the TypeScript side gets its own.
    const tsClient = new AgentClient(agent.endpoint, { timeoutMs: 10_000 });
    const hist: Histograms = {};
    return {
      a: cSide('agent', agent.endpoint, agent.pid, burstMs, hist),
      b: cSide('aiozmq.rpc reference', ref.endpoint, ref.pid, burstMs, hist),
      anchors: [
        cSide(ANCHOR.zmqjs, jsEcho.endpoint, jsEcho.pid, burstMs, hist),
        cSide(ANCHOR.libzmq, cEcho.endpoint, cEcho.pid, burstMs, hist),
        tsSide(ANCHOR.tsClient, tsClient, agent.pid, burstMs),
      ],
      details: () => ({ latencyHistogramsUs: hist }),
      async close() {
        tsClient.close();
      },
    };
  },
  verdict(m, anchors) {
    const ratio = m['throughput@128']!.ratio;
    const agent = m['throughput@128']!.a.median;
    const js = anchors[ANCHOR.zmqjs]?.['throughput@128']?.median ?? NaN;
    const ofJs = agent / js;
    const cpu = (label: string) => anchors[label]?.['cpu@128']?.median ?? NaN;
    return {
      met: ratio >= 3 && ofJs >= 0.9,
      detail:
        `at 128 in flight the agent does ${ratio.toFixed(2)}x the reference (target >= 3) and ${(ofJs * 100).toFixed(0)}% of the bare zeromq.js echo ` +
        `(target >= 90%); server CPU per request at 128: agent ${m['cpu@128']!.a.median.toFixed(1)} µs, reference ${m['cpu@128']!.b.median.toFixed(1)} µs, ` +
        `zeromq.js echo ${cpu(ANCHOR.zmqjs).toFixed(1)} µs, libzmq echo ${cpu(ANCHOR.libzmq).toFixed(1)} µs`,
    };
  },
};
