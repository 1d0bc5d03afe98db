/**
 * Figure 2, cold kernel creation: `create_kernel` through the agent until
 * the runner answers, against `docker run -d` (the real docker CLI) of the
 * same image with the same limits, environment and home mount until the
 * runner answers, read through `docker port`. Both sides wait for the runner
 * to answer a `%ping` through KernelRelay on the published ports: the agent
 * inside create_kernel (which answers only then), the CLI side after it.
 * Destruction between rounds is not timed.
 */
import { execFile } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ContainerSecurity } from '../../src/adapters/docker.js';
import { containerSecurity } from '../../src/config/security.js';
import { defaultSettings } from '../../src/config/settings.js';
import { errorMessage } from '../../src/errors.js';
import { containerRequest, imageTraits, prepareScratch } from '../../src/kernels/launch.js';
import { parseKernelConfig } from '../../src/kernels/spec.js';
import { methods } from '../../src/rpc/methods.js';
import type { Figure, Side } from '../harness.js';
import { BENCH_LABEL, IMAGE_PREFIX, KERNEL_LANG, type BenchEnv } from '../lib/env.js';
import { runnerAnswers } from '../lib/runner.js';

const run = promisify(execFile);
const DOCKER = process.env.BENCH_DOCKER ?? 'docker';
/** The kernel both sides create: one core, 256 MiB, no swap. */
export const KERNEL_CONFIG = { lang: KERNEL_LANG, limits: { cpu_slot: 1, mem_slot: 256 }, mounts: [], environ: {} };
const KERNEL_UID = 1000; // the agent's default kernel_uid

/** Parses `docker port` output ("2000/tcp -> 127.0.0.1:49153" lines) into host ports by container port. */
export function parseDockerPort(out: string): Map<number, number> {
  const ports = new Map<number, number>();
  for (const line of out.split('\n')) {
    const m = /^(\d+)\/tcp -> .*:(\d+)\s*$/.exec(line.trim());
    if (m && !ports.has(Number(m[1]))) ports.set(Number(m[1]), Number(m[2]));
  }
  return ports;
}

function agentSide(env: BenchEnv, cpuSet: { last: number[] }): Side {
  return {
    label: 'agent create_kernel',
    async measure(round) {
      const { client } = await env.agent();
      const id = `${env.runId}-cold-${round < 0 ? `w${-round}` : round}`;
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

function cliSide(env: BenchEnv, cpuSet: { last: number[] }, homes: string, traits: ReturnType<typeof imageTraits>): Side {
  return {
    label: 'docker run -d',
    async measure(round) {
      const id = `${env.runId}-cli-${round < 0 ? `w${-round}` : round}`;
      const home = path.join(homes, id);
      const spec = parseKernelConfig(KERNEL_CONFIG, IMAGE_PREFIX, '/mnt');
      await prepareScratch(home, spec.environ, KERNEL_UID); // as the agent does; untimed here, timed there
      // The agent's own container request, so the limits and environment are the same by construction.
      const req = containerRequest({
        agentId: 'none', kernelId: id, spec, cpuSet: cpuSet.last, traits, scratchDir: home,
        kernelUid: KERNEL_UID, publishHost: '127.0.0.1', createdAt: Date.now(), security: containerSecurity(defaultSettings()),
      });
      const args = ['run', '-d', '--name', `bench.${id}`, '--label', `${BENCH_LABEL}=${env.runId}`,
        '--cpuset-cpus', req.cpusetCpus, '--memory', `${req.memoryBytes}b`, '--memory-swap', `${req.memoryBytes}b`,
        ...securityFlags(req.security), ...req.env.flatMap((e) => ['-e', e]), ...req.binds.flatMap((b) => ['-v', b]),
        ...[2000, 2001, 2002, 2003].flatMap((p) => ['-p', `${req.publishHost}::${p}`]), req.image];
      const t0 = performance.now();
      const container = (await run(DOCKER, args)).stdout.trim();
      const ports = parseDockerPort((await run(DOCKER, ['port', container])).stdout);
      const [inPort, outPort] = [ports.get(2000), ports.get(2001)];
      if (!inPort || !outPort) throw new Error(`docker port ${container.slice(0, 12)} did not list ports 2000 and 2001`);
      await runnerAnswers('127.0.0.1', inPort, outPort);
      const ms = performance.now() - t0;
      await env.docker.getContainer(container).remove({ force: true });
      return { create: [ms] };
    },
  };
}

/** The docker CLI flags of the agent's lock-down (the bench agent runs with the default settings). */
function securityFlags(s: ContainerSecurity): string[] {
  return [
    ...(s.noNewPrivileges ? ['--security-opt', 'no-new-privileges'] : []),
    ...(s.seccomp === 'unconfined' ? ['--security-opt', 'seccomp=unconfined'] : []),
    ...(s.capabilities ? ['--cap-drop', 'ALL', ...s.capabilities.flatMap((c) => ['--cap-add', c])] : []),
    ...(s.pidsLimit > 0 ? ['--pids-limit', String(s.pidsLimit)] : []),
    ...(s.nofileLimit > 0 ? ['--ulimit', `nofile=${s.nofileLimit}:${s.nofileLimit}`] : []),
  ];
}

export const coldCreateFigure: Figure = {
  name: 'cold-create',
  title: 'Cold kernel creation: agent create_kernel vs docker run -d',
  measures: 'milliseconds from the request (an RPC, or starting the docker CLI) until the kernel runner answers %ping on its published port',
  target: 'the agent no slower than the docker CLI (median ratio at most 1.0)',
  sides: ['agent create_kernel', 'docker run -d'],
  metrics: [{ key: 'create', label: 'creation until the runner answers', unit: 'ms', better: 'lower' }],
  rounds: { full: 20, short: 2 },
  async prepare(env) {
    await env.agent();
    const name = `${IMAGE_PREFIX}${KERNEL_LANG}`;
    const image = await env.docker.getImage(name).inspect().catch((err: unknown) => {
      throw new Error(`cannot inspect the kernel image ${name} (${errorMessage(err)}): deploy/kernels/build-base.sh builds it`);
    });
    const traits = imageTraits(image.Config?.Labels ?? {});
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
