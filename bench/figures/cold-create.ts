/**
 * Figure 2, cold kernel creation: `create_kernel` through the agent until
 * the runner answers, against `docker run -d` (the real docker CLI) of the
 * same image with the same limits, environment and home mount until the
 * runner answers, read through `docker port`. Both sides wait for the runner
 * to answer a `%ping` through KernelRelay on the published ports: the agent
 * inside create_kernel (which answers only then), the CLI side after it.
 * Destruction between rounds is not timed.
 */
import { performance } from 'node:perf_hooks';
import { methods } from '../../src/rpc/methods.js';
import { roundName, type Figure, type Side } from '../harness.js';
import { dockerRunKernel, kernelImageTraits, kernelRunArgs, removeKernel } from '../lib/docker-run.js';
import { KERNEL_LANG, type BenchEnv } from '../lib/env.js';
import type { ImageTraits } from '../../src/containers/image-traits.js';
import { runnerAnswers } from '../lib/runner.js';

export { parseDockerPort } from '../lib/docker-run.js';

/** The kernel both sides create: one core, 256 MiB, no swap. */
export const KERNEL_CONFIG = { lang: KERNEL_LANG, limits: { cpu_slot: 1, mem_slot: 256 }, mounts: [], environ: {} };

function agentSide(env: BenchEnv, cpuSet: { last: number[] }): Side {
  return {
    label: 'agent create_kernel',
    async measure(round) {
      const { client } = await env.agent();
      const id = `${env.runId}-cold-${roundName(round)}`;
      const t0 = performance.now();
      // create_kernel answers once the kernel's runner has answered %ping (runner_ready_timeout).
      const info = await client.callWithTimeout(120_000, methods.create_kernel, id, KERNEL_CONFIG);
      const ms = performance.now() - t0;
      cpuSet.last = info.cpu_set;
      await client.callWithTimeout(120_000, methods.destroy_kernel, id);
      return { create: [ms] };
    },
  };
}

function cliSide(env: BenchEnv, cpuSet: { last: number[] }, homes: string, traits: ImageTraits): Side {
  return {
    label: 'docker run -d',
    async measure(round) {
      const id = `${env.runId}-cli-${roundName(round)}`;
      // The agent's own container request, so the limits and environment are the same by construction; the home is prepared untimed here, timed there.
      const args = await kernelRunArgs(env, id, KERNEL_CONFIG, cpuSet.last, homes, traits);
      const t0 = performance.now();
      const k = await dockerRunKernel(env, args);
      try {
        await runnerAnswers(k.host, k.inPort, k.outPort);
      } catch (err) {
        await removeKernel(env, k.container);
        throw err;
      }
      const ms = performance.now() - t0;
      await removeKernel(env, k.container);
      return { create: [ms] };
    },
  };
}

export const coldCreateFigure: Figure = {
  name: 'cold-create',
  title: 'Cold kernel creation: agent create_kernel vs docker run -d',
  measures:
    'milliseconds from the request (an RPC, or starting the docker CLI) until the kernel runner answers %ping ' +
    "(the agent's own %ping, which its create_kernel waits for; on the CLI side one through the published port)",
  target: 'the agent no slower than the docker CLI (median ratio at most 1.0)',
  sides: ['agent create_kernel', 'docker run -d'],
  metrics: [{ key: 'create', label: 'creation until the runner answers', unit: 'ms', better: 'lower' }],
  rounds: { full: 20, short: 2 },
  async prepare(env) {
    await env.agent();
    const traits = await kernelImageTraits(env);
    const homes = await env.tempDir('bench-cli-homes');
    const cpuSet = { last: [0] }; // the docker side uses the cores the agent picked last
    return { a: agentSide(env, cpuSet), b: cliSide(env, cpuSet, homes, traits), close: async () => {} };
  },
  verdict(m) {
    const c = m.create!;
    return {
      met: c.ratio <= 1.0,
      detail: `agent/CLI median ${c.ratio.toFixed(2)} (target <= 1.0); p99 ${c.a.p99.toFixed(0)} vs ${c.b.p99.toFixed(0)} ms`,
    };
  },
};
