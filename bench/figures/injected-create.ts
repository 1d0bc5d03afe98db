/**
 * Injected runner, cold creation: `create_kernel` of an image whose runner
 * the agent brings (its runner environment mounted read-only, the
 * environment's entrypoint; docs/images.rst, "Bring your own image")
 * against `create_kernel` of the same image with its runner baked in, both
 * until the runner answers. The injected side's image is the kernel image
 * relabelled `io.compute-agent.runner=inject` (no layer added), so the two
 * differ only in where the runner comes from. Destruction is not timed.
 */
import { performance } from 'node:perf_hooks';
import { methods } from '../../src/rpc/methods.js';
import { RUNNER_LABEL } from '../../src/containers/runner-env.js';
import { roundName, type Figure, type Side } from '../harness.js';
import { BENCH_LABEL, IMAGE_PREFIX, KERNEL_LANG, type BenchEnv } from '../lib/env.js';

function createSide(env: BenchEnv, label: string, lang: string, tag: string): Side {
  return {
    label,
    async measure(round) {
      const { client } = await env.agent();
      const id = `${env.runId}-${tag}-${roundName(round)}`;
      const t0 = performance.now();
      await client.callWithTimeout(120_000, methods.create_kernel, id, {
        lang,
        limits: { cpu_slot: 1, mem_slot: 256 },
        mounts: [],
        environ: {},
      });
      const ms = performance.now() - t0;
      await client.callWithTimeout(120_000, methods.destroy_kernel, id);
      return { create: [ms] };
    },
  };
}

/** The kernel image relabelled to take the injected runner; removed at close. */
async function injectedImage(env: BenchEnv): Promise<string> {
  const [name] = KERNEL_LANG.split(':') as [string];
  const tag = `${env.runId}-injected`;
  const c = await env.docker.createContainer({ Image: IMAGE_PREFIX + KERNEL_LANG, Cmd: ['true'], Labels: { [BENCH_LABEL]: env.runId } });
  try {
    const base = await env.docker.getImage(IMAGE_PREFIX + KERNEL_LANG).inspect();
    await c.commit({
      repo: IMAGE_PREFIX + name,
      tag,
      changes: [
        `LABEL ${RUNNER_LABEL}=inject`,
        `ENTRYPOINT ${JSON.stringify(base.Config.Entrypoint ?? [])}`,
        `CMD ${JSON.stringify(base.Config.Cmd ?? [])}`,
      ],
    });
  } finally {
    await c.remove({ force: true });
  }
  env.onClose(() =>
    env.docker
      .getImage(`${IMAGE_PREFIX}${name}:${tag}`)
      .remove({ force: true })
      .then(
        () => undefined,
        () => undefined,
      ),
  );
  return `${name}:${tag}`;
}

export const injectedCreateFigure: Figure = {
  name: 'injected-create',
  title: 'Cold creation with the injected runner vs the runner baked in',
  measures:
    'milliseconds of create_kernel until the runner answers, for the kernel image with the runner environment mounted ' +
    '(relabelled io.compute-agent.runner=inject) and for the same image running its own runner',
  target: 'the injected runner at most 15 % slower at the median (ratio at most 1.15)',
  sides: ['injected runner', 'baked-in runner'],
  metrics: [{ key: 'create', label: 'creation until the runner answers', unit: 'ms', better: 'lower' }],
  rounds: { full: 20, short: 1 },
  async prepare(env) {
    await env.agent();
    const injected = await injectedImage(env);
    return {
      a: createSide(env, 'injected runner', injected, 'inj'),
      b: createSide(env, 'baked-in runner', KERNEL_LANG, 'baked'),
      close: async () => {},
    };
  },
  verdict(m) {
    const c = m.create!;
    return {
      met: c.ratio <= 1.15,
      detail: `injected/baked median ${c.ratio.toFixed(2)} (target <= 1.15); p99 ${c.a.p99.toFixed(0)} vs ${c.b.p99.toFixed(0)} ms`,
    };
  },
};
