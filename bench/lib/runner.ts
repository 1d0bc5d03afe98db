/**
 * Talking to a kernel runner straight on its published ports (PROTOCOL.md
 * section 4), with the agent's own KernelRelay: both sides of the cold
 * creation figure wait for the runner through this, and it is the "direct"
 * side of the execute figure; {@link kernelPair} gives the execute and
 * streaming figures their two kernels.
 */
import { KernelRelay } from '../../src/relay/kernel-relay.js';
import { silentLogger } from '../../src/log.js';
import { methods, type KernelInfo } from '../../src/rpc/methods.js';
import type { BenchAgent } from './env.js';

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

/** Resolves when the runner answers `%ping` (the runner binds its ports a moment after its container starts). */
export async function runnerAnswers(host: string, replInPort: number, replOutPort: number): Promise<void> {
  const relay = directRelay(host, replInPort, replOutPort);
  try {
    await relay.ping();
  } finally {
    relay.close();
  }
}

/** A connection straight to a runner's ports, as a figure's direct side holds one. */
export interface RunnerConnection {
  /** Runs `%ping` (the first one waits for the runner to bind). */
  ping(): Promise<unknown>;
  close(): void;
}

/**
 * Two kernels made by the agent with one config, `<name>-agent` used through
 * the agent and `<name>-direct` through `connect` on its ports: two readers
 * on one runner would split its output, so each side has its own. Both have
 * answered `%ping` when this resolves (warm-up rounds come after);
 * `close` closes the connection and destroys both. On a failure nothing is
 * left behind.
 */
export async function kernelPair<C extends RunnerConnection>(
  agent: BenchAgent,
  name: string,
  config: Record<string, unknown>,
  connect: (info: KernelInfo) => C,
): Promise<{ viaAgent: string; direct: C; close(): Promise<void> }> {
  const viaAgent = `${name}-agent`;
  const directId = `${name}-direct`;
  const create = (id: string) => agent.client.callWithTimeout(120_000, methods.create_kernel, id, config);
  const destroy = (id: string) => agent.client.callWithTimeout(120_000, methods.destroy_kernel, id).catch(() => null);
  await create(viaAgent);
  let info: KernelInfo;
  try {
    info = await create(directId);
  } catch (err) {
    await destroy(viaAgent);
    throw err;
  }
  const direct = connect(info);
  const close = async () => {
    direct.close();
    await Promise.all([destroy(viaAgent), destroy(directId)]);
  };
  try {
    await agent.client.callWithTimeout(60_000, methods.execute, 2, viaAgent, null, 'query', '%ping', {}, 30);
    await direct.ping();
  } catch (err) {
    await close();
    throw err;
  }
  return { viaAgent, direct, close };
}
