/**
 * Figure 1, RPC: `ping` through the agent against a stock aiozmq.rpc server
 * (bench/reference/aiozmq_server.py on Debian's python3-aiozmq) serving the
 * same `ping` with the same framing. One load generator (AgentClient from
 * src/rpc/client.ts) drives both, at 1, 16 and 128 calls in flight.
 */
import path from 'node:path';
import { AgentClient } from '../../src/rpc/client.js';
import type { Figure, MetricDef, Side } from '../harness.js';
import { REPO_ROOT } from '../lib/env.js';
import { drive } from '../lib/load.js';
import { freePort } from '../lib/ports.js';

/** Debian's python, which has python3-aiozmq (the pyenv one on PATH does not). */
const PYTHON = process.env.BENCH_PYTHON ?? '/usr/bin/python3';
const SERVER = path.join(REPO_ROOT, 'bench/reference/aiozmq_server.py');
const LEVELS = [1, 16, 128] as const;

const metrics: MetricDef[] = LEVELS.flatMap((n) => [
  { key: `throughput@${n}`, label: `throughput, ${n} in flight`, unit: 'req/s', better: 'higher' as const },
  { key: `latency@${n}`, label: `latency, ${n} in flight`, unit: 'ms', better: 'lower' as const },
]);

function side(label: string, client: AgentClient, burstMs: number): Side {
  const call = () => client.callRaw('ping', ['ping'], {}, 10_000);
  return {
    label,
    async measure() {
      const out: Record<string, number[]> = {};
      for (const n of LEVELS) {
        const r = await drive(call, n, burstMs);
        out[`throughput@${n}`] = [r.rate];
        out[`latency@${n}`] = r.latenciesMs;
      }
      return out;
    },
  };
}

export const rpcFigure: Figure = {
  name: 'rpc',
  title: 'RPC: ping through the agent vs a reference aiozmq.rpc server',
  measures: 'requests per second (one value per round and level) and the latency of every ping, with 1, 16 and 128 pings kept in flight by one client',
  target: 'at least 3x the reference throughput at 128 in flight, and a lower p99 latency at every level',
  sides: ['agent', 'aiozmq.rpc reference'],
  metrics,
  rounds: { full: 10, short: 2 },
  async prepare(env, settings) {
    const burstMs = settings.short ? 150 : 700;
    const agent = await env.agent();
    const port = await freePort();
    const ref = env.spawnChild(PYTHON, [SERVER, `tcp://127.0.0.1:${port}`]);
    await env.waitForOutput(ref, /ready/);
    const refClient = new AgentClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 10_000 });
    // The agent's client is shared with other figures; this one gets its own, like the reference's.
    const agentClient = new AgentClient(agent.endpoint, { timeoutMs: 10_000 });
    return {
      a: side('agent', agentClient, burstMs),
      b: side('aiozmq.rpc reference', refClient, burstMs),
      async close() {
        agentClient.close();
        refClient.close();
        ref.proc.kill('SIGTERM');
      },
    };
  },
  verdict(m) {
    const ratio = m['throughput@128']!.ratio;
    const tails = LEVELS.map((n) => ({ n, a: m[`latency@${n}`]!.a.p99, b: m[`latency@${n}`]!.b.p99 }));
    const lowerTails = tails.every((t) => t.a < t.b);
    return {
      met: ratio >= 3 && lowerTails,
      detail:
        `throughput at 128 in flight ${ratio.toFixed(2)}x the reference (target >= 3); p99 latency agent/reference: ` +
        tails.map((t) => `${t.n}: ${t.a.toFixed(2)}/${t.b.toFixed(2)} ms`).join(', ') +
        (lowerTails ? ' (lower at every level)' : ' (not lower at every level)'),
    };
  },
};
