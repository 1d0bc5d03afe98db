/**
 * Figure 4, execute overhead: `execute` of `x=1` (query mode) through the
 * agent's RPC against the same code sent straight to a runner's ports with
 * the runner's protocol (KernelRelay, as the agent itself uses it): the
 * limit, a runner round trip with nothing in between. Each side has its own
 * kernel with the same limits on the same core, the direct one started by
 * the docker CLI outside the agent (bench/lib/runner.ts kernelPair): two
 * relays on one runner would split its output between them.
 */
import { performance } from 'node:perf_hooks';
import type { KernelRelay } from '../../src/relay/kernel-relay.js';
import { methods } from '../../src/rpc/methods.js';
import { type RunResult } from '../../src/rpc/results.js';
import type { Figure, Side } from '../harness.js';
import type { BenchAgent } from '../lib/env.js';
import { directRelay, kernelPair } from '../lib/runner.js';
import { KERNEL_CONFIG } from './cold-create.js';

const CODE = 'x=1';
const FLUSH_TIMEOUT_S = 2.0;

function finished(r: RunResult, side: string): void {
  if (r.status !== 'finished' || r.exitCode !== 0)
    throw new Error(`${side}: ${CODE} ended as ${r.status} (exit code ${r.exitCode}), not finished`);
}

function agentSide(agent: BenchAgent, kernelId: string, calls: number): Side {
  return {
    label: 'through the agent',
    async measure() {
      const ms: number[] = [];
      for (let i = 0; i < calls; i++) {
        const t0 = performance.now();
        const r = await agent.client.call(methods.execute, 2, kernelId, null, 'query', CODE, {}, FLUSH_TIMEOUT_S);
        ms.push(performance.now() - t0);
        finished(r, 'agent');
      }
      return { execute: ms };
    },
  };
}

function directSide(relay: KernelRelay, calls: number): Side {
  return {
    label: 'straight to the runner',
    async measure() {
      const ms: number[] = [];
      for (let i = 0; i < calls; i++) {
        const t0 = performance.now();
        const r = await relay.execute({
          apiVersion: 2,
          runId: null,
          mode: 'query',
          code: CODE,
          opts: {},
          flushTimeoutMs: FLUSH_TIMEOUT_S * 1000,
        });
        ms.push(performance.now() - t0);
        finished(r, 'direct');
      }
      return { execute: ms };
    },
  };
}

export const executeFigure: Figure = {
  name: 'execute',
  title: 'Execute overhead: execute through the agent vs straight to the runner',
  measures: `milliseconds of one execute of \`${CODE}\` (query mode, api 2) until its finished result, one call at a time`,
  target: 'the agent adds under 0.5 ms at p50 (median difference)',
  sides: ['through the agent', 'straight to the runner'],
  metrics: [{ key: 'execute', label: `execute ${CODE}`, unit: 'ms', better: 'lower' }],
  rounds: { full: 10, short: 2 },
  async prepare(env, settings) {
    const agent = await env.agent();
    const {
      viaAgent,
      direct: relay,
      close,
    } = await kernelPair(env, agent, `${env.runId}-exec`, { ...KERNEL_CONFIG, cpu_set: [0] }, (k) =>
      directRelay(k.host, k.inPort, k.outPort),
    );
    const calls = settings.short ? 20 : 100;
    return { a: agentSide(agent, viaAgent, calls), b: directSide(relay, calls), close };
  },
  verdict(m) {
    const e = m.execute!;
    return {
      met: e.delta < 0.5,
      detail: `the agent adds ${e.delta.toFixed(3)} ms at p50 (target < 0.5 ms); p99 ${e.a.p99.toFixed(2)} vs ${e.b.p99.toFixed(2)} ms`,
    };
  },
};
