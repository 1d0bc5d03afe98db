/**
 * Frozen warm containers: an agent whose warm pool of 8 waits paused
 * (`pool/freeze`) against the same pool waiting running (2 and 2 in the
 * short form), both agents of the run side by side. Per round and side: one
 * claim, `create_kernel` until the kernel answers `%ping` through the agent
 * (warm-create's measurement; with freeze on it includes the unpause), then
 * untimed its destroy and the wait until the pool is whole (and, frozen,
 * paused) again, read from `/metrics`; then an idle window in which the CPU
 * the pool's containers use is read from their cgroups, and the agent's own
 * from /proc (readiness checks, which unpause and pause frozen ones, at the
 * default `pool/readiness_interval` of 30 s).
 */
import { performance } from 'node:perf_hooks';
import Docker from 'dockerode';
import { LABELS } from '../../src/adapters/labels.js';
import type { Figure, Side } from '../harness.js';
import type { BenchAgent, BenchEnv } from '../lib/env.js';
import { containerCpuNs } from '../lib/container-cpu.js';
import { freePort } from '../lib/ports.js';
import { cpuNs } from '../lib/proc.js';
import { KERNEL_CONFIG } from './cold-create.js';
import { createOnce, waitForPool } from './warm-create.js';

/** Frozen pooled containers, summed over images and types, from Prometheus text. */
export function frozenCount(text: string): number {
  let n = 0;
  for (const m of text.matchAll(/^compute_agent_pool_frozen\{[^}]*\}\s+([\d.e+-]+)$/gm)) n += Number(m[1]);
  return n;
}

/** Waits until `size` pooled containers of the agent behind `metricsUrl` are paused. */
async function waitFrozen(metricsUrl: string, size: number, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await fetch(metricsUrl).then(
      (r) => r.text(),
      () => '',
    );
    if (frozenCount(text) >= size) return;
    if (Date.now() > deadline) throw new Error(`the pool did not have ${size} frozen containers within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The CPU time (ns) used so far by an agent's pooled containers. */
async function poolCpuNs(docker: Docker, agentId: string): Promise<number> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.agent}=${agentId}`, LABELS.pool] } });
  let total = 0;
  for (const c of list) total += (await containerCpuNs(c.Id)) || 0;
  return total;
}

function side(label: string, env: BenchEnv, agent: BenchAgent, tag: string, whole: () => Promise<void>, windowMs: number): Side {
  const docker = new Docker();
  return {
    label,
    async measure(round) {
      const samples = await createOnce(agent, `${env.runId}-${tag}-${round < 0 ? `w${-round}` : round}`);
      await whole();
      const [p0, a0, t0] = [await poolCpuNs(docker, agent.agentId), await cpuNs(agent.pid), performance.now()];
      await new Promise((r) => setTimeout(r, windowMs));
      const [p1, a1, ms] = [await poolCpuNs(docker, agent.agentId), await cpuNs(agent.pid), performance.now() - t0];
      return {
        claim: samples.usable!,
        rpc: samples.rpc!,
        poolCpu: [((p1 - p0) / 1e6 / ms) * 100],
        agentCpu: [((a1 - a0) / 1e6 / ms) * 100],
      };
    },
  };
}

export const poolFreezeFigure: Figure = {
  name: 'pool-freeze',
  title: 'Frozen warm pool: a claim from a paused pool of 8 vs a running one, and the idle CPU each costs',
  measures:
    "milliseconds from create_kernel until the kernel answers %ping (and the RPC alone), and the CPU of the idle pool (its containers' cgroups) and of " +
    'the agent over a 10 s window (2 s short; % of one core), with pool/freeze on against off',
  target: 'a claim from the frozen pool costs under 20 ms more (median), and the idle pool uses less CPU frozen',
  sides: ['frozen pool', 'running pool'],
  metrics: [
    { key: 'claim', label: 'claim until the kernel answers', unit: 'ms', better: 'lower' },
    { key: 'rpc', label: 'create_kernel round trip', unit: 'ms', better: 'lower' },
    { key: 'poolCpu', label: 'idle pool CPU', unit: '% of a core', better: 'lower' },
    { key: 'agentCpu', label: 'agent CPU while idle', unit: '% of a core', better: 'lower' },
  ],
  rounds: { full: 12, short: 2 },
  async prepare(env, settings) {
    const size = settings.short ? 2 : 8;
    const windowMs = settings.short ? 2000 : 10_000;
    const pooled = async (name: string, freeze: boolean) => {
      const port = await freePort();
      const agent = await env.agent({
        name,
        settings: {
          'pool/types': JSON.stringify([{ name: 'bench', cpu: KERNEL_CONFIG.limits.cpu_slot, memory: KERNEL_CONFIG.limits.mem_slot }]),
          'pool/images': JSON.stringify({ [KERNEL_CONFIG.lang]: { bench: size } }),
          'pool/check_interval': '0.2',
          'pool/freeze': String(freeze),
        },
        args: ['--metrics-port', String(port)],
      });
      const url = `http://127.0.0.1:${port}/metrics`;
      const whole = async () => {
        await waitForPool(url, size);
        if (freeze) await waitFrozen(url, size);
      };
      await whole();
      return { agent, whole };
    };
    const frozen = await pooled('frozen', true);
    const running = await pooled('running', false);
    return {
      a: side('frozen pool', env, frozen.agent, 'fz', frozen.whole, windowMs),
      b: side('running pool', env, running.agent, 'run', running.whole, windowMs),
      close: async () => {},
    };
  },
  verdict(m) {
    const extra = m.claim!.a.median - m.claim!.b.median;
    const cpu = m.poolCpu!;
    const met = extra < 20 && cpu.a.median < cpu.b.median;
    return {
      met,
      detail:
        `a claim costs ${extra.toFixed(1)} ms more frozen (p50 ${m.claim!.a.median.toFixed(1)} vs ${m.claim!.b.median.toFixed(1)} ms; target < 20); ` +
        `the idle pool uses ${cpu.a.median.toFixed(3)} % of a core frozen vs ${cpu.b.median.toFixed(3)} % running; the agent ${m.agentCpu!.a.median.toFixed(2)} vs ${m.agentCpu!.b.median.toFixed(2)} %`,
    };
  },
};
