/**
 * Figure 5, output streaming: a run that writes 100 MiB to stdout, read
 * through the agent (`execute`, then `continue` until finished, as a manager
 * drives it) against the same run read straight from a runner's output
 * socket (a PUSH/PULL pair on its published ports, PROTOCOL.md section 4, no
 * relay code at all). Each side has its own kernel, both made by the agent
 * with the same limits: two readers on one runner would split its output.
 * Every byte is counted on both sides; a short count fails the round.
 */
import { performance } from 'node:perf_hooks';
import * as zmq from 'zeromq';
import { methods, type KernelInfo } from '../../src/rpc/methods.js';
import type { Figure, Side } from '../harness.js';
import type { BenchAgent } from '../lib/env.js';
import { kernelPair, type RunnerConnection } from '../lib/runner.js';
import { KERNEL_CONFIG } from './cold-create.js';

const MiB = 1024 * 1024;
/** The run: `mib` lines of 1 MiB (newline included), written as fast as the runner takes them. */
const code = (mib: number) => `import sys\nline = "x" * ${MiB - 1} + "\\n"\nfor _ in range(${mib}):\n    sys.stdout.write(line)\n`;
const FLUSH_TIMEOUT_S = 2.0;

function agentSide(agent: BenchAgent, kernelId: string, mib: number): Side {
  return {
    label: 'through the agent',
    async measure() {
      const t0 = performance.now();
      let bytes = 0;
      let r = await agent.client.callWithTimeout(60_000, methods.execute, 2, kernelId, null, 'query', code(mib), {}, FLUSH_TIMEOUT_S);
      for (;;) {
        for (const e of r.console ?? []) if (e[0] === 'stdout') bytes += Buffer.byteLength(e[1] as string);
        if (r.status !== 'continued') break;
        r = await agent.client.callWithTimeout(60_000, methods.execute, 2, kernelId, r.runId, 'continue', '', {}, FLUSH_TIMEOUT_S);
      }
      const s = (performance.now() - t0) / 1000;
      if (r.status !== 'finished' || bytes !== mib * MiB) throw new Error(`agent: the run ended ${r.status} with ${bytes} of ${mib * MiB} bytes`);
      return { rate: [mib / s] };
    },
  };
}

/** The direct side: a runner's own sockets, read with no relay in between. */
type DirectSide = Side & RunnerConnection;

function directSide(info: KernelInfo, mib: number): DirectSide {
  const push = new zmq.Push({ linger: 0 });
  const pull = new zmq.Pull({ linger: 0, receiveTimeout: 60_000 });
  push.connect(`tcp://${info.kernel_host}:${info.repl_in_port}`);
  pull.connect(`tcp://${info.kernel_host}:${info.repl_out_port}`);
  const run = async (src: string) => {
    await push.send(['code', src]);
    let bytes = 0;
    for (;;) {
      const [type, payload] = await pull.receive();
      const t = type!.toString();
      if (t === 'stdout') bytes += payload?.length ?? 0;
      if (t === 'finished') return bytes;
    }
  };
  return {
    label: 'straight from the runner',
    async measure() {
      const t0 = performance.now();
      const bytes = await run(code(mib));
      const s = (performance.now() - t0) / 1000;
      if (bytes !== mib * MiB) throw new Error(`direct: the run ended with ${bytes} of ${mib * MiB} bytes`);
      return { rate: [mib / s] };
    },
    ping: () => run('%ping'),
    close() {
      push.close();
      pull.close();
    },
  };
}

export const streamingFigure: Figure = {
  name: 'streaming',
  title: 'Output streaming: 100 MiB of stdout through the agent vs straight from the runner',
  measures: 'MiB/s of a run writing 100 MiB to stdout in 1 MiB lines, from sending the code until its finished record (one run per round)',
  target: 'the agent at least 80% of the direct rate (median)',
  sides: ['through the agent', 'straight from the runner'],
  metrics: [{ key: 'rate', label: 'stdout rate', unit: 'MiB/s', better: 'higher' }],
  rounds: { full: 6, short: 2 },
  async prepare(env, settings) {
    const mib = settings.short ? 8 : 100;
    const agent = await env.agent();
    const config = { ...KERNEL_CONFIG, limits: { cpu_slot: 1, mem_slot: 512 } };
    const { viaAgent, direct: b, close } = await kernelPair(agent, `${env.runId}-stream`, config, (info) => directSide(info, mib));
    return { a: agentSide(agent, viaAgent, mib), b, close };
  },
  verdict(m) {
    const r = m.rate!;
    return {
      met: r.ratio >= 0.8,
      detail: `the agent streams at ${(r.ratio * 100).toFixed(0)}% of the direct rate (${r.a.median.toFixed(0)} vs ${r.b.median.toFixed(0)} MiB/s; target >= 80%)`,
    };
  },
};
