/**
 * Burst claims: 8 `create_kernel` at once against an agent with a warm pool
 * of 8 containers of the requested size (2 and 2 in the short form), each
 * timed from its request until its answer, against the same burst on the
 * agent without a pool (cold creations). After each round the kernels are
 * destroyed and the figure waits, untimed, until the pool is whole again.
 * Before each burst (of either side) it waits, untimed, until the machine is
 * quiet: the last round's containers are removed and the pool's new runners
 * have started, so that the burst is measured and not what the last round
 * set off.
 */
import { performance } from 'node:perf_hooks';
import { methods } from '../../src/rpc/methods.js';
import type { Figure, Side } from '../harness.js';
import type { BenchAgent, BenchEnv } from '../lib/env.js';
import { atOnce, destroyKernels, roundKernelIds } from '../lib/kernels.js';
import { freePort } from '../lib/ports.js';
import { waitForQuiet } from '../lib/proc.js';
import { KERNEL_CONFIG } from './cold-create.js';
import { waitForPool } from './warm-create.js';

function side(label: string, env: BenchEnv, agent: BenchAgent, tag: string, count: number, after: () => Promise<void>): Side {
  return {
    label,
    async measure(round) {
      const calm = await waitForQuiet();
      if (!calm.quiet)
        console.error(
          `bench: burst-claims: the machine stayed busy (${(calm.busy * 100).toFixed(0)}% of its CPUs) before a ${label} burst; measuring anyway`,
        );
      const { values } = await atOnce(
        roundKernelIds(env, tag, round, count),
        async (id) => {
          const t0 = performance.now();
          await agent.client.callWithTimeout(300_000, methods.create_kernel, id, KERNEL_CONFIG);
          return performance.now() - t0;
        },
        (id) => destroyKernels(agent, [id]),
      );
      await after();
      return { claim: values };
    },
  };
}

export const burstClaimsFigure: Figure = {
  name: 'burst-claims',
  title: 'Burst claims: 8 create_kernel at once from a warm pool of 8 vs the same burst cold',
  measures: 'milliseconds of each create_kernel of a burst of 8 at once (2 in the short form), from its request until its answer',
  target: 'from the pool, p99 under 50 ms',
  sides: ['warm pool', 'cold'],
  metrics: [{ key: 'claim', label: 'create_kernel in a burst', unit: 'ms', better: 'lower' }],
  rounds: { full: 10, short: 1 },
  async prepare(env, settings) {
    const count = settings.short ? 2 : 8;
    const metricsPort = await freePort();
    const pooled = await env.agent({
      name: 'burst-pool',
      settings: {
        'pool/types': JSON.stringify([{ name: 'bench', cpu: KERNEL_CONFIG.limits.cpu_slot, memory: KERNEL_CONFIG.limits.mem_slot }]),
        'pool/images': JSON.stringify({ [KERNEL_CONFIG.lang]: { bench: count } }),
        'pool/check_interval': '0.2',
        cpu_overcommit: '16',
      },
      args: ['--metrics-port', String(metricsPort)],
    });
    const cold = await env.agent({ name: 'burst-cold', settings: { cpu_overcommit: '16' }, args: [] });
    const url = `http://127.0.0.1:${metricsPort}/metrics`;
    const refill = () => waitForPool(url, count, 300_000);
    await refill();
    return {
      a: side('warm pool', env, pooled, 'claim', count, refill),
      b: side('cold', env, cold, 'claimcold', count, async () => {}),
      close: async () => {},
    };
  },
  verdict(m) {
    const c = m.claim!;
    return {
      met: c.a.p99 < 50,
      detail: `from the pool p50 ${c.a.median.toFixed(1)} ms, p99 ${c.a.p99.toFixed(1)} ms (target < 50); cold p50 ${c.b.median.toFixed(0)} ms`,
    };
  },
};
