/**
 * Figure 6, density: an agent holding many idle kernels (100; 4 in the short
 * form) against an agent of the same build holding none, both running side
 * by side and idle: the agent's RSS, the CPU it uses while idle over a
 * window (heartbeats with every kernel's cgroup figures, the registration
 * check, the idle reaper), and `ping` latency one call at a time. RSS and
 * CPU are read from /proc (CPU as the sum of every thread's time on a core,
 * from `schedstat`, in nanoseconds). Kernels are made before the first round
 * and destroyed after the last, untimed.
 */
import { performance } from 'node:perf_hooks';
import { methods } from '../../src/rpc/methods.js';
import type { Figure, Side } from '../harness.js';
import type { BenchAgent } from '../lib/env.js';
import { cpuNs, rssKiB } from '../lib/proc.js';
import { KERNEL_CONFIG } from './cold-create.js';

function side(label: string, agent: BenchAgent, windowMs: number, pings: number): Side {
  return {
    label,
    async measure() {
      const rss = (await rssKiB(agent.pid)) / 1024;
      const c0 = await cpuNs(agent.pid);
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, windowMs));
      const cpu = ((await cpuNs(agent.pid)) - c0) / 1e6 / (performance.now() - t0) * 100;
      const ping: number[] = [];
      for (let i = 0; i < pings; i++) {
        const t = performance.now();
        await agent.client.call(methods.ping, 'density');
        ping.push(performance.now() - t);
      }
      return { rss: [rss], cpu: [cpu], ping };
    },
  };
}

/** Makes `count` kernels on an agent, `parallel` at a time. */
async function fill(agent: BenchAgent, ids: string[], parallel: number): Promise<void> {
  const config = { ...KERNEL_CONFIG, limits: { cpu_slot: 1, mem_slot: 128 } };
  const queue = [...ids];
  const worker = async () => {
    for (let id = queue.shift(); id; id = queue.shift()) await agent.client.callWithTimeout(300_000, methods.create_kernel, id, config);
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

export const densityFigure: Figure = {
  name: 'density',
  title: 'Density: an agent holding 100 idle kernels vs one holding none',
  measures: 'agent RSS (MiB), CPU while idle (% of one core, over a 10 s window) and ping latency (ms, 200 calls one at a time), per round',
  target: 'with the kernels: RSS under 150 MiB and idle CPU under 2% of a core (medians)',
  sides: ['holding the kernels', 'holding none'],
  metrics: [
    { key: 'rss', label: 'agent RSS', unit: 'MiB', better: 'lower' },
    { key: 'cpu', label: 'agent CPU while idle', unit: '% of a core', better: 'lower' },
    { key: 'ping', label: 'ping', unit: 'ms', better: 'lower' },
  ],
  rounds: { full: 6, short: 2 },
  async prepare(env, settings) {
    const count = settings.short ? 4 : 100;
    const windowMs = settings.short ? 3000 : 10_000;
    const pings = settings.short ? 50 : 200;
    // A core per kernel, as a manager would ask; overcommitted so that 100 fit on this machine.
    const dense = await env.agent({ name: 'dense', settings: { cpu_overcommit: '64' }, args: [] });
    const empty = await env.agent({ name: 'empty', settings: {}, args: [] });
    const ids = Array.from({ length: count }, (_, i) => `${env.runId}-dense-${i}`);
    const close = async () => {
      for (let i = 0; i < ids.length; i += 10) {
        await Promise.all(ids.slice(i, i + 10).map((id) => dense.client.callWithTimeout(120_000, methods.destroy_kernel, id).catch(() => null)));
      }
    };
    try {
      await fill(dense, ids, 4);
    } catch (err) {
      await close();
      throw err;
    }
    return { a: side('holding the kernels', dense, windowMs, pings), b: side('holding none', empty, windowMs, pings), close };
  },
  verdict(m) {
    const rss = m.rss!.a.median;
    const cpu = m.cpu!.a.median;
    return {
      met: rss < 150 && cpu < 2,
      detail: `with the kernels: RSS ${rss.toFixed(1)} MiB (target < 150), idle CPU ${cpu.toFixed(2)}% of a core (target < 2), ping p99 ${m.ping!.a.p99.toFixed(2)} ms (${m.ping!.b.p99.toFixed(2)} ms without)`,
    };
  },
};
