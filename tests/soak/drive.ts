/**
 * Drivers shared by the soak command and the drill tests: an agent run as a
 * child process (so its RSS and descriptors can be read from /proc: the
 * reader is bench/lib/proc.ts, which the density figure uses too), and a
 * create/execute/destroy cycle through the RPC.
 */
import { Etcd3, type Namespace } from 'etcd3';
import { methods } from '../../src/rpc/methods.js';
import { type KernelInfo, type RunResult } from '../../src/rpc/results.js';
import { AgentClient } from '../../src/rpc/client.js';
import {
  loopbackAgentFlags,
  ETCD_ADDR,
  freePort,
  nextPortBlock,
  onCleanup,
  removeContainersOf,
  spawnAgent,
  tempScratch,
  testEtcd,
  TEST_IMAGE_LANG,
  uniqueName,
  type SpawnedAgent,
} from '../helpers/env.js';
export { procFigures, type ProcFigures } from '../../bench/lib/proc.js';

/** The kernel config of the drills: one core, small memory. */
export const SMALL_KERNEL = { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 256 }, mounts: [], environ: {} };

/** Options of {@link childAgent}. */
export interface ChildAgentOptions {
  /** Cluster settings put under `config/agent/` before the agent starts, e.g. `{ cpu_overcommit: '16' }` or the warm pool's `pool/images`. */
  settings?: Record<string, string>;
  /** Reuse these (a restart of the same agent). */
  namespace?: string;
  agentId?: string;
  scratch?: string;
  port?: number;
  etcdAddr?: string;
  /** The agent process's environment besides the test's own, e.g. AGENT_FAULTS (src/util/faults.ts); not kept for a restart. */
  env?: NodeJS.ProcessEnv;
}

/** An agent run as a child process, with a client and what identifies it. */
export interface ChildAgent {
  proc: SpawnedAgent;
  client: AgentClient;
  pid: number;
  port: number;
  namespace: string;
  agentId: string;
  scratch: string;
  etcd: Namespace;
  options: ChildAgentOptions;
}

/** Starts the real CLI as a child against etcd and waits until it runs; killed and cleaned up after the test. */
export async function childAgent(options: ChildAgentOptions = {}): Promise<ChildAgent> {
  const namespace = options.namespace ?? uniqueName('test');
  const agentId = options.agentId ?? uniqueName('i-test');
  const scratch = options.scratch ?? (await tempScratch());
  const port = options.port ?? (await freePort());
  const etcdAddr = options.etcdAddr ?? ETCD_ADDR;
  const etcd = etcdAddr === ETCD_ADDR ? testEtcd(namespace).ns : ownEtcdNamespace(etcdAddr, namespace); // a restart registers the namespace's clean-up again: harmless
  if (!options.agentId) removeContainersOf(agentId);
  // Under mocha, a new namespace gets a port block of its own, as in-process test agents do (test
  // processes run at once); `npm run soak` keeps the default range, whose 1,000 ports its long runs need.
  const underMocha = typeof (globalThis as { describe?: unknown }).describe === 'function';
  const settings =
    underMocha && !options.namespace ? { container_port_range: nextPortBlock().text, ...options.settings } : options.settings;
  for (const [k, v] of Object.entries(settings ?? {})) await etcd.put(`config/agent/${k}`).value(v);
  const proc = spawnAgent(await loopbackAgentFlags({ etcdAddr: etcdAddr, namespace, agentId, port, scratchRoot: scratch }), options.env);
  await proc.waitFor(/"message":"agent running"/, 60_000);
  const client = new AgentClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 30_000 });
  onCleanup(() => client.close());
  return {
    proc,
    client,
    pid: proc.child.pid!,
    port,
    namespace,
    agentId,
    scratch,
    etcd,
    options: { ...options, namespace, agentId, scratch, port, etcdAddr, env: undefined },
  };
}

/**
 * The namespace on an etcd of a test's own (the drills' paused one), where
 * the agent reads its settings; only its client is closed after the test,
 * since that etcd goes with the test and may be paused when the test fails.
 */
function ownEtcdNamespace(addr: string, namespace: string): Namespace {
  const client = new Etcd3({ hosts: `http://${addr}` });
  onCleanup(() => client.close());
  return client.namespace(`/sorna/${namespace}/`);
}

/**
 * Runs code in query mode and follows `continue` to the end; returns the stdout. A run still going after
 * `endWithinMs` (the soaks' and drills' programs print a line and end) is an error naming the kernel, not a hang.
 */
export async function runCode(client: AgentClient, id: string, code: string, endWithinMs = 120_000): Promise<string> {
  let out = '';
  const deadline = Date.now() + endWithinMs;
  let r: RunResult = await client.callWithTimeout(60_000, methods.execute, 2, id, null, 'query', code, {});
  for (;;) {
    for (const [stream, text] of r.console ?? []) if (stream === 'stdout') out += String(text);
    if (r.status !== 'continued' && r.status !== 'build-finished') return out;
    if (Date.now() > deadline)
      throw new Error(
        `the run ${r.runId} of kernel ${id} has not ended within ${endWithinMs / 1000} s (stdout so far: ${JSON.stringify(out)})`,
      );
    r = await client.callWithTimeout(60_000, methods.execute, 2, id, r.runId, 'continue', '', {});
  }
}

/** One create/execute/destroy cycle; throws when the kernel does not print its own token. Returns the kernel's ports. */
export async function cycle(client: AgentClient, id: string, config: Record<string, unknown> = SMALL_KERNEL): Promise<number[]> {
  const info: KernelInfo = await client.callWithTimeout(120_000, methods.create_kernel, id, config);
  const token = `tok-${id}`;
  const out = await runCode(client, id, `print(${JSON.stringify(token)})`);
  if (out !== `${token}\n`) throw new Error(`kernel ${id} printed ${JSON.stringify(out)}, expected its token ${token}`);
  await client.callWithTimeout(120_000, methods.destroy_kernel, id, 'user-requested');
  return [info.repl_in_port, info.repl_out_port, info.stdin_port, info.stdout_port];
}
