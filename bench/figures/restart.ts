/**
 * Restart recovery: an agent holding 100 kernels (4 in the short form) is
 * killed (SIGKILL: its kernels stay) and started again with the same id,
 * namespace and port; the time is from spawning the new process until it
 * answers `ping` (its RPC socket binds once it has re-adopted every kernel
 * it found). Against the same restart of an agent of the same build on an
 * empty node (no kernels of its own). The kernels are made before the first
 * round and destroyed after the last, untimed.
 */
import type { Figure, Side } from '../harness.js';
import type { BenchEnv } from '../lib/env.js';
import { holdKernels } from '../lib/kernels.js';

type Restartable = Awaited<ReturnType<BenchEnv['restartableAgent']>>;

function side(label: string, agent: Restartable): Side {
  return {
    label,
    async measure() {
      await agent.kill();
      return { restart: [await agent.start()] };
    },
  };
}

export const restartFigure: Figure = {
  name: 'restart',
  title: 'Restart recovery: an agent re-adopting 100 kernels vs one on an empty node',
  measures:
    'milliseconds from starting the agent process (after a SIGKILL) until it answers ping, having re-adopted its kernels (100; 4 in the short form)',
  target: 'with the kernels, less than 2 s more than on an empty node (median difference)',
  sides: ['re-adopting the kernels', 'empty node'],
  metrics: [{ key: 'restart', label: 'start until ping answers', unit: 'ms', better: 'lower' }],
  rounds: { full: 6, short: 1 },
  async prepare(env, settings) {
    const count = settings.short ? 4 : 100;
    const full = await env.restartableAgent({ name: 'restart-full', settings: { cpu_overcommit: '64' }, args: [] });
    const empty = await env.restartableAgent({ name: 'restart-empty', settings: {}, args: [] });
    await Promise.all([full.start(), empty.start()]);
    const { close } = await holdKernels(env, () => full.current(), 'readopt', count, { parallel: 4 });
    return { a: side('re-adopting the kernels', full), b: side('empty node', empty), close };
  },
  verdict(m) {
    const r = m.restart!;
    return {
      met: r.delta < 2000,
      detail: `re-adopting the kernels takes ${(r.delta / 1000).toFixed(2)} s more than an empty node (target < 2 s): ${r.a.median.toFixed(0)} vs ${r.b.median.toFixed(0)} ms at the median`,
    };
  },
};
