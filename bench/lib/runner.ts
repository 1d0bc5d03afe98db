/**
 * Talking to a kernel runner straight on its published ports (docs/wire-contract.rst, "Kernel runner ports"), with the agent's own KernelRelay: both sides of the cold
 * creation figure wait for the runner through this, and it is the "direct"
 * side of the execute figure; {@link kernelPair} gives the execute and
 * streaming figures their two kernels, the second one outside the agent.
 */
import { KernelRelay } from '../../src/relay/kernel-relay.js';
import { silentLogger } from '../../src/log.js';
import { methods } from '../../src/rpc/methods.js';
import { dockerRunKernel, kernelImageTraits, kernelRunArgs, removeKernel } from './docker-run.js';
import type { BenchAgent, BenchEnv } from './env.js';

/** A relay to a runner at `host` on its published repl ports, with no exec timeout and no output-file listing. */
export function directRelay(host: string, replInPort: number, replOutPort: number): KernelRelay {
  return new KernelRelay({
    host,
    replInPort,
    replOutPort,
    log: silentLogger(),
    execTimeoutSec: 0,
    onExecTimeout: () => {},
    outputFiles: async () => [],
  });
}

/** Resolves when the runner answers `status`, as the agent waits for it (the runner binds its ports a moment after its container starts). */
export async function runnerAnswers(host: string, replInPort: number, replOutPort: number): Promise<void> {
  const relay = directRelay(host, replInPort, replOutPort);
  try {
    await relay.ready();
  } finally {
    relay.close();
  }
}

/** A connection straight to a runner's ports, as a figure's direct side holds one. */
export interface RunnerConnection {
  /** Resolves once the runner answers (the first call waits for the runner to bind). */
  ready(): Promise<unknown>;
  close(): void;
}

/** Where a runner's ports are (a kernel of the agent's or one started by the docker CLI). */
export interface RunnerPorts {
  host: string;
  inPort: number;
  outPort: number;
}

/**
 * A kernel started by the docker CLI with the agent's container request for
 * `config` on `cpuSet`, outside the agent (bench/lib/docker-run.ts says why),
 * once its runner answers `%ping`; `remove` takes it away (the run's end does
 * at the latest).
 */
export async function standaloneKernel(
  env: BenchEnv,
  id: string,
  config: Record<string, unknown>,
  cpuSet: number[],
): Promise<RunnerPorts & { remove(): Promise<void> }> {
  const args = await kernelRunArgs(env, id, config, cpuSet, await env.tempDir('bench-homes'), await kernelImageTraits(env));
  const k = await dockerRunKernel(env, args);
  const remove = () => removeKernel(env, k.container);
  try {
    await runnerAnswers(k.host, k.inPort, k.outPort);
  } catch (err) {
    await remove();
    throw err;
  }
  return { ...k, remove };
}

/**
 * Two kernels with one config: `<name>-agent`, made by the agent and used
 * through it, and `<name>-direct`, started by the docker CLI with the same
 * container request on the same cores and used through `connect` on its
 * ports (a kernel of the agent's has the agent's relay on its output socket,
 * and two readers would split a runner's output). Both have answered
 * `%ping` when this resolves (warm-up rounds come after); `close` closes the
 * connection and removes both. On a failure nothing is left behind.
 */
export async function kernelPair<C extends RunnerConnection>(
  env: BenchEnv,
  agent: BenchAgent,
  name: string,
  config: Record<string, unknown>,
  connect: (ports: RunnerPorts) => C,
): Promise<{ viaAgent: string; direct: C; close(): Promise<void> }> {
  const viaAgent = `${name}-agent`;
  const destroy = () => agent.client.callWithTimeout(120_000, methods.destroy_kernel, viaAgent).catch(() => null);
  const info = await agent.client.callWithTimeout(120_000, methods.create_kernel, viaAgent, config);
  let standalone: Awaited<ReturnType<typeof standaloneKernel>>;
  try {
    standalone = await standaloneKernel(env, `${name}-direct`, config, info.cpu_set);
  } catch (err) {
    await destroy();
    throw err;
  }
  const direct = connect(standalone);
  const close = async () => {
    direct.close();
    await Promise.all([destroy(), standalone.remove()]);
  };
  try {
    await agent.client.callWithTimeout(60_000, methods.execute, 2, viaAgent, null, 'query', '%ping', {}, 30);
    await direct.ready();
  } catch (err) {
    await close();
    throw err;
  }
  return { viaAgent, direct, close };
}
