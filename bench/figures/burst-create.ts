/**
 * Burst creation: 16 cold `create_kernel` at once through the agent until
 * every one has answered (an answer now means the kernel's runner answered
 * `%ping`), against 16 `docker run -d` at once (the docker CLI, the agent's
 * own container request) until every runner answers `%ping` on its
 * published ports. 4 at once in the short form. The time of a round is
 * until the last kernel of the burst is usable; the kernels are removed
 * between rounds, untimed. The agent runs with its default
 * `create_concurrency` (4 creations at once; the rest wait their turn), as
 * an operator would have it.
 */
import { methods } from '../../src/rpc/methods.js';
import type { Figure, Side } from '../harness.js';
import { dockerRunKernel, kernelImageTraits, kernelRunArgs, removeKernel } from '../lib/docker-run.js';
import type { BenchAgent, BenchEnv } from '../lib/env.js';
import { atOnce, roundKernelIds } from '../lib/kernels.js';
import { runnerAnswers } from '../lib/runner.js';
import { KERNEL_CONFIG } from './cold-create.js';

function agentSide(env: BenchEnv, agent: BenchAgent, count: number): Side {
  return {
    label: `${count} create_kernel at once`,
    async measure(round) {
      const ids = roundKernelIds(env, 'burst', round, count);
      const { ms } = await atOnce(
        ids,
        (id) => agent.client.callWithTimeout(300_000, methods.create_kernel, id, KERNEL_CONFIG),
        (id) => agent.client.callWithTimeout(120_000, methods.destroy_kernel, id),
      );
      return { burst: [ms] };
    },
  };
}

function cliSide(env: BenchEnv, count: number, homes: string, traits: Awaited<ReturnType<typeof kernelImageTraits>>): Side {
  return {
    label: `${count} docker run -d at once`,
    async measure(round) {
      const ids = roundKernelIds(env, 'burstcli', round, count);
      // The homes and arguments are prepared before the clock starts (the agent's time includes them).
      const args = await Promise.all(ids.map((id, i) => kernelRunArgs(env, id, KERNEL_CONFIG, [i % 2], homes, traits)));
      const containers = new Map<string, string>();
      const { ms } = await atOnce(
        ids,
        async (id, i) => {
          const k = await dockerRunKernel(env, args[i]!);
          containers.set(id, k.container);
          await runnerAnswers(k.host, k.inPort, k.outPort);
        },
        async (id) => {
          const c = containers.get(id);
          if (c) await removeKernel(env, c);
        },
      );
      return { burst: [ms] };
    },
  };
}

export const burstCreateFigure: Figure = {
  name: 'burst-create',
  title: 'Burst creation: 16 cold create_kernel at once vs 16 docker run -d at once',
  measures: 'milliseconds from starting 16 creations at once (4 in the short form) until the last kernel runner answers %ping',
  target: 'the agent no slower than the docker CLI (median ratio at most 1.0)',
  sides: ['create_kernel burst', 'docker run -d burst'],
  metrics: [{ key: 'burst', label: 'burst until the last runner answers', unit: 'ms', better: 'lower' }],
  rounds: { full: 6, short: 1 },
  async prepare(env, settings) {
    const count = settings.short ? 4 : 16;
    // A core each is more than two cores hold: the bench's agent overcommits them (cpu_overcommit 4, bench/lib/env.ts), the CLI side alternates cores 0 and 1.
    const agent = await env.agent({ name: 'burst', settings: { cpu_overcommit: '16' }, args: [] });
    const traits = await kernelImageTraits(env);
    const homes = await env.tempDir('bench-burst-homes');
    return { a: agentSide(env, agent, count), b: cliSide(env, count, homes, traits), close: async () => {} };
  },
  verdict(m) {
    const b = m.burst!;
    return {
      met: b.ratio <= 1.0,
      detail: `agent/CLI median ${b.ratio.toFixed(2)} (target <= 1.0): ${b.a.median.toFixed(0)} vs ${b.b.median.toFixed(0)} ms, the agent at its default create_concurrency of 4`,
    };
  },
};
