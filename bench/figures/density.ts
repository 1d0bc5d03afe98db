/**
 * Figure 6, density: an agent holding many idle kernels (300; 4 in the short
 * form; where the node cannot hold that many here, as many as it held, said
 * in the verdict) against an agent of the same build holding none, both running side
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
import { holdKernels } from '../lib/kernels.js';
import { cpuNs, rssKiB } from '../lib/proc.js';

function side(label: string, agent: BenchAgent, windowMs: number, pings: number): Side {
  return {
    label,
    async measure() {
      const rss = (await rssKiB(agent.pid)) / 1024;
      const c0 = await cpuNs(agent.pid);
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, windowMs));
      const cpu = (((await cpuNs(agent.pid)) - c0) / 1e6 / (performance.now() - t0)) * 100;
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

/** How many kernels the dense agent held in the last run (the verdict reports it). */
let held = { count: 0, of: 0 };

export const densityFigure: Figure = {
  name: 'density',
  title: 'Density: an agent holding 300 idle kernels vs one holding none',
  measures: 'agent RSS (MiB), CPU while idle (% of one core, over a 10 s window) and ping latency (ms, 200 calls one at a time), per round',
  target: 'with the kernels: RSS under 150 MiB and idle CPU under 3% of a core (medians)',
  sides: ['holding the kernels', 'holding none'],
  metrics: [
    { key: 'rss', label: 'agent RSS', unit: 'MiB', better: 'lower' },
    { key: 'cpu', label: 'agent CPU while idle', unit: '% of a core', better: 'lower' },
    { key: 'ping', label: 'ping', unit: 'ms', better: 'lower' },
  ],
  rounds: { full: 6, short: 2 },
  async prepare(env, settings) {
    const count = settings.short ? 4 : 300;
    const windowMs = settings.short ? 1000 : 10_000;
    const pings = settings.short ? 50 : 200;
    // A core and 128 MiB per kernel, as a manager would ask; cores and memory overcommitted so that 300 idle ones fit on this machine
    // (each uses far less than its limit: the runner is about 14 MiB).
    // Four host ports a kernel: the default range (1,000 ports, shared with the run's other agents) holds about 220, so the dense agent
    // gets 2,000 of its own, below the ephemeral range (32768 and up) that the run's sockets take theirs from.
    const dense = await env.agent({
      name: 'dense',
      settings: { cpu_overcommit: String(Math.max(64, Math.ceil(count / 2))), mem_overcommit: '4', container_port_range: '20000-21999' },
      args: [],
    });
    const empty = await env.agent({ name: 'empty', settings: {}, args: [] });
    const { made, close } = await holdKernels(env, () => dense, 'dense', count, { parallel: 4, tolerate: true });
    held = { count: made.length, of: count };
    if (held.count === 0) {
      await close();
      throw new Error('density: the node held no kernel at all');
    }
    return { a: side('holding the kernels', dense, windowMs, pings), b: side('holding none', empty, windowMs, pings), close };
  },
  verdict(m) {
    const rss = m.rss!.a.median;
    const cpu = m.cpu!.a.median;
    return {
      met: rss < 150 && cpu < 3 && held.count === held.of,
      detail: `${held.count === held.of ? `with ${held.count} kernels` : `with ${held.count} kernels (the node held no more of the ${held.of} asked for: the run's log says why the next create failed)`}: RSS ${rss.toFixed(1)} MiB (target < 150), idle CPU ${cpu.toFixed(2)}% of a core (target < 3), ping p99 ${m.ping!.a.p99.toFixed(2)} ms (${m.ping!.b.p99.toFixed(2)} ms without)`,
    };
  },
};
