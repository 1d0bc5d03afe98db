/**
 * Figure 3, warm kernel creation: `create_kernel` answered from a warm pool
 * against the same `create_kernel` on an agent without a pool (a cold
 * create), both until the kernel answers an `execute` of `%ping` through the
 * agent, and the RPC round trip alone. (Not a direct connection to the
 * runner as in figure 2: a claim already opened the agent's relay, and a
 * runner's PUSH would share its replies between two relays.) The pooled agent is a second agent of the run with a pool of
 * two containers of the requested size; after each warm round the figure
 * waits (untimed) until the pool is whole again, read from the agent's
 * `/metrics` endpoint. Destruction between rounds is not timed.
 */
import { performance } from 'node:perf_hooks';
import { methods } from '../../src/rpc/methods.js';
import { roundName, type Figure, type Samples, type Side } from '../harness.js';
import type { BenchAgent, BenchEnv } from '../lib/env.js';
import { freePort } from '../lib/ports.js';
import { KERNEL_CONFIG } from './cold-create.js';

/** How many warm containers the pool keeps. */
const POOL_SIZE = 2;

/** Idle and creating pooled containers, summed over images and types, from Prometheus text. */
export function poolCounts(text: string): { idle: number; creating: number } {
  const counts = { idle: 0, creating: 0 };
  for (const line of text.split('\n')) {
    const m = /^compute_agent_pool_containers\{[^}]*state="(idle|creating)"[^}]*\}\s+([\d.e+-]+)$/.exec(line.trim());
    if (m) counts[m[1] as 'idle' | 'creating'] += Number(m[2]);
  }
  return counts;
}

/** Waits until the pool behind `metricsUrl` holds `size` idle containers and none is being made. */
export async function waitForPool(metricsUrl: string, size = POOL_SIZE, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await fetch(metricsUrl).then(
      (r) => r.text(),
      (err: unknown) => `unreachable: ${String(err)}`,
    );
    const c = poolCounts(text);
    if (c.idle >= size && c.creating === 0) return;
    if (Date.now() > deadline)
      throw new Error(`the warm pool did not refill to ${size} within ${timeoutMs / 1000} s (last: ${JSON.stringify(c)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One create until the kernel answers `%ping` through the agent, then an untimed destroy. */
export async function createOnce(agent: BenchAgent, id: string): Promise<Samples> {
  const t0 = performance.now();
  await agent.client.callWithTimeout(120_000, methods.create_kernel, id, KERNEL_CONFIG);
  const created = performance.now() - t0;
  let r = await agent.client.callWithTimeout(60_000, methods.execute, 2, id, null, 'query', '%ping', {});
  while (r.status === 'continued') r = await agent.client.callWithTimeout(60_000, methods.execute, 2, id, r.runId, 'continue', '', {});
  const usable = performance.now() - t0;
  if (r.status !== 'finished') throw new Error(`%ping in kernel ${id} ended ${r.status}`);
  await agent.client.callWithTimeout(120_000, methods.destroy_kernel, id);
  return { usable: [usable], rpc: [created] };
}

function side(label: string, env: BenchEnv, agent: BenchAgent, tag: string, after: () => Promise<void>): Side {
  return {
    label,
    async measure(round) {
      const samples = await createOnce(agent, `${env.runId}-${tag}-${roundName(round)}`);
      await after();
      return samples;
    },
  };
}

export const warmCreateFigure: Figure = {
  name: 'warm-create',
  title: 'Warm kernel creation: create_kernel from a warm pool vs a cold create',
  measures:
    'milliseconds from the create_kernel request until the kernel answers an execute of %ping through the agent (and the RPC round trip alone), ' +
    'on an agent with a warm pool of 2 against an agent without one',
  target: 'warm p50 under 15 ms and p99 under 50 ms, at least 20x faster than cold (median, until the kernel answers)',
  sides: ['warm (pool)', 'cold'],
  metrics: [
    { key: 'usable', label: 'create until the kernel answers', unit: 'ms', better: 'lower' },
    { key: 'rpc', label: 'create_kernel round trip', unit: 'ms', better: 'lower' },
  ],
  rounds: { full: 30, short: 2 },
  async prepare(env) {
    const metricsPort = await freePort();
    const pooled = await env.agent({
      name: 'pool',
      settings: {
        'pool/types': JSON.stringify([{ name: 'bench', cpu: KERNEL_CONFIG.limits.cpu_slot, memory: KERNEL_CONFIG.limits.mem_slot }]),
        'pool/images': JSON.stringify({ [KERNEL_CONFIG.lang]: { bench: POOL_SIZE } }),
        'pool/check_interval': '0.2',
      },
      args: ['--metrics-port', String(metricsPort)],
    });
    const cold = await env.agent();
    const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    await waitForPool(metricsUrl);
    return {
      a: side('warm (pool)', env, pooled, 'warm', () => waitForPool(metricsUrl)),
      b: side('cold', env, cold, 'cold', async () => {}),
      close: async () => {},
    };
  },
  verdict(m) {
    const u = m.usable!;
    const speedup = u.b.median / u.a.median;
    const met = u.a.median < 15 && u.a.p99 < 50 && speedup >= 20;
    return {
      met,
      detail: `warm p50 ${u.a.median.toFixed(1)} ms (target < 15), p99 ${u.a.p99.toFixed(1)} ms (target < 50), ${speedup.toFixed(1)}x faster than cold (target >= 20x)`,
    };
  },
};
