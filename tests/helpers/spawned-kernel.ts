/** A real agent process with one kernel, for the tests that stop or kill the agent under a run. */
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import {
  freePort,
  loopbackAgentFlags,
  onCleanup,
  removeContainersOf,
  spawnAgent,
  tempScratch,
  testEtcd,
  uniqueName,
  type SpawnedAgent,
} from './env.js';

/**
 * Starts the agent CLI on loopback (a fresh namespace, id and scratch root,
 * its containers removed after the test), waits until it runs, and creates
 * one kernel through it; `args` start the same agent again.
 */
export async function spawnedKernel(config: Record<string, unknown>): Promise<{
  args: string[];
  first: SpawnedAgent;
  client: AgentClient;
  id: string;
  scratch: string;
}> {
  const namespace = uniqueName('test');
  const agentId = uniqueName('i-test');
  testEtcd(namespace);
  removeContainersOf(agentId);
  const port = await freePort();
  const scratch = await tempScratch();
  const args = await loopbackAgentFlags({ namespace, agentId, port, scratchRoot: scratch });
  const first = spawnAgent(args);
  await first.waitFor(/"message":"agent running"/);
  const client = new AgentClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 30_000 });
  onCleanup(() => client.close());
  const id = uniqueName('k');
  await client.callWithTimeout(60_000, methods.create_kernel, id, config);
  return { args, first, client, id, scratch };
}
