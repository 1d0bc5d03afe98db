/**
 * Shared set-up of the integration tests: where the real etcd and Docker are,
 * unique names and ports per test, an agent built in-process, and an agent
 * run as a child process for signal tests. Everything a helper starts is
 * registered for teardown, so a failing test leaves nothing behind.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { Etcd3, type Namespace } from 'etcd3';
import { Agent } from '../../src/agent.js';
import { validateOptions, type RawOptions } from '../../src/config/options.js';
import { createLogger, silentLogger, type Logger } from '../../src/log.js';
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import { RemoteError } from '../../src/errors.js';
import { removeKernelNetwork } from '../../src/containers/kernel-network.js';
import { DockerNetworks } from '../../src/adapters/docker-networks.js';
import { LABELS } from '../../src/adapters/labels.js';
import { freePort } from '../../bench/lib/ports.js';

/** A TCP port that was free a moment ago (shared with the benchmarks). */
export { freePort };

/** The repository root (tests run from dist/tests/...). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const AGENT_BIN = path.join(REPO_ROOT, 'dist/src/cli/agent.js');
export const ETCD_ADDR = process.env.BACKEND_ETCD_ADDR ?? '127.0.0.1:2379';
/** The kernel image the stack script builds, and its prefix. */
export const TEST_IMAGE_PREFIX = 'lablup/kernel-';
export const TEST_IMAGE_LANG = process.env.TEST_KERNEL_LANG ?? 'python:3-debian';
/** The Jupyter image's lang (deploy/kernels/build-jupyter.sh); TEST_JUPYTER_LANG for another tag. */
export const TEST_JUPYTER_LANG = process.env.TEST_JUPYTER_LANG ?? 'python:3-jupyter';

/** Whether a TCP port accepts a connection within `timeoutMs`. */
export function reachable(host: string, port: number, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: timeoutMs }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
    s.on('timeout', () => {
      s.destroy();
      resolve(false);
    });
  });
}

/** Fails with a clear message when the real etcd is not there; call it in an integration suite's before(). */
export async function requireEtcd(): Promise<void> {
  const [host, port] = ETCD_ADDR.split(':');
  if (!(await reachable(host!, Number(port)))) {
    throw new Error(`etcd does not answer at ${ETCD_ADDR}: run deploy/dev/up.sh first (the test command does it)`);
  }
}

/** A short random suffix for names that must not collide between tests or runs. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** Things to undo after each test, last first. */
const cleanups: Array<() => Promise<void> | void> = [];
export function onCleanup(fn: () => Promise<void> | void): void {
  cleanups.push(fn);
}
/**
 * Runs `fn` and keeps the cleanups it registers out of the test's: for what a
 * `before` hook sets up for every test of a file (they would run after the
 * first test). Resolves with fn's value and a function that runs those
 * cleanups, last first (for the `after` hook); when fn throws, they run at once.
 */
export async function heldCleanups<T>(fn: () => Promise<T>): Promise<[T, () => Promise<void>]> {
  const mark = cleanups.length;
  try {
    const value = await fn();
    const held = cleanups.splice(mark);
    return [value, () => runAll(held)];
  } catch (err) {
    await runAll(cleanups.splice(mark));
    throw err;
  }
}

/** Runs and empties a list of cleanups, last first; a failing one is logged and the rest still run. */
async function runAll(list: Array<() => Promise<void> | void>): Promise<void> {
  while (list.length) {
    const fn = list.pop()!;
    try {
      await fn();
    } catch (err) {
      console.error('cleanup failed:', err);
    }
  }
}

export async function runCleanups(): Promise<void> {
  await runAll(cleanups);
}

/** An etcd client on a namespace of its own, removed after the test. */
export function testEtcd(namespace: string): { client: Etcd3; ns: Namespace } {
  const [host, port] = ETCD_ADDR.split(':');
  const client = new Etcd3({ hosts: `http://${host}:${port}` });
  const ns = client.namespace(`/sorna/${namespace}/`);
  onCleanup(async () => {
    await ns.delete().all();
    client.close();
  });
  return { client, ns };
}

/** A scratch root of its own, removed after the test. */
export async function tempScratch(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-scratch-'));
  onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The cores the agent's kernels hold now, as get_node_stats tells any caller (its CPU slots in all minus those free). */
export async function coresHeld(client: AgentClient): Promise<number> {
  const { slots } = await client.call(methods.get_node_stats);
  return slots.cpu_total - slots.cpu_free;
}

/** The kernel ids the agent lists (list_kernels), in its order. */
export async function kernelIds(client: AgentClient): Promise<string[]> {
  return (await client.call(methods.list_kernels)).map((k) => k.id);
}

/** The containers (running or not) that the agent of this id created: they carry its label, and only they do. */
export function containersOf(agentId: string): Promise<Docker.ContainerInfo[]> {
  return new Docker().listContainers({ all: true, filters: { label: [`io.compute-agent.agent=${agentId}`] } });
}

/**
 * After the test, removes every container the agent of this id created, then
 * its kernel network and firewall chains (an agent keeps them at its stop
 * while its kernels still run).
 */
export function removeContainersOf(agentId: string): void {
  onCleanup(async () => {
    const docker = new Docker();
    await Promise.all(
      (await containersOf(agentId)).map((c) =>
        docker
          .getContainer(c.Id)
          .remove({ force: true })
          .catch(() => undefined),
      ),
    );
    await removeNetworkOf(agentId);
  });
}

/** Removes the kernel network, session networks and firewall chains of the agent of this id (a killed agent leaves them), if it has any. */
export async function removeNetworkOf(agentId: string): Promise<void> {
  const networks = new DockerNetworks(new Docker());
  await removeKernelNetwork(agentId, networks);
  for (const name of await networks.listByLabel(`${LABELS.agent}=${agentId}`)) await networks.remove(name).catch(() => undefined);
}

/** The RemoteError a call fails with; fails the test if the call succeeds or fails otherwise. */
export async function remoteError(p: Promise<unknown>): Promise<RemoteError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof RemoteError) return err;
    throw err;
  }
  throw new Error('the call succeeded but should have failed');
}

/** What {@link startAgent} returns. */
export interface TestAgent {
  agent: Agent;
  client: AgentClient;
  port: number;
  namespace: string;
  agentId: string;
  etcd: Namespace;
  /** The host ports its kernels are published on (see {@link nextPortBlock}). */
  ports: { lo: number; hi: number; text: string };
}

/** The host ports of in-process test agents: 20 blocks of 500, from 10000 (below freePort's 20000-). */
const PORT_BLOCKS = { first: 10_000, size: 500, count: 20 };
/** Test processes that may run at once (mocha's parallel workers, a serial run beside them), each with a lane of PORT_BLOCKS.count / PORT_LANES blocks. */
const PORT_LANES = 4;
let portBlocks = 0;
let portLane: { lane: number; lanes: number } | undefined;

/**
 * The lane of port blocks this process holds: claimed with a lock file of
 * its own in the temp dir (its pid inside, removed at exit; a dead pid's
 * file is taken over), so that test processes running at once (mocha's
 * parallel workers, a serial run beside them) never hand out the same
 * block. Where every lane is held, the whole range, as one process did
 * before lanes, with a warning.
 */
function claimPortLane(): { lane: number; lanes: number } {
  for (let lane = 0; lane < PORT_LANES; lane++) {
    const file = path.join(os.tmpdir(), `compute-agent-test-port-lane-${lane}`);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        writeFileSync(file, String(process.pid), { flag: 'wx' });
        process.once('exit', () => rmSync(file, { force: true }));
        return { lane, lanes: PORT_LANES };
      } catch {
        try {
          const holder = Number(readFileSync(file, 'utf8').trim() || 'NaN');
          if (holder === process.pid) return { lane, lanes: PORT_LANES };
          if (Number.isInteger(holder) && alive(holder)) break; // held: the next lane
          rmSync(file, { force: true }); // left by a process that is gone
        } catch {
          // gone meanwhile (try again), or not ours to read or remove (the next lane)
        }
      }
    }
  }
  console.warn(
    `every test port lane (${os.tmpdir()}/compute-agent-test-port-lane-*) is held: this process uses all ${PORT_BLOCKS.count} blocks`,
  );
  return { lane: 0, lanes: 1 };
}

/** Whether a process of that pid exists (one of another user's counts). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A block of 500 host ports of its own for each in-process test agent, put
 * as its container_port_range: the blocks of this process's lane (see
 * {@link claimPortLane}; 5 of the 20 in 10000-19999), in turn (the soak's
 * 100 kernels need 400 with the default port_reuse_cooldown). Every agent's
 * port book starts empty, so with one shared range consecutive tests gave
 * the first ports to a new kernel while the last test's containers were
 * still being removed, and Docker then took the new container's published
 * port down with the old one's (seen: nothing listening on a running
 * kernel's port for 30 s, until the pool gave up on it).
 */
export function nextPortBlock(): { lo: number; hi: number; text: string } {
  portLane ??= claimPortLane();
  const perLane = PORT_BLOCKS.count / portLane.lanes;
  const block = portLane.lane * perLane + (portBlocks++ % perLane);
  const lo = PORT_BLOCKS.first + block * PORT_BLOCKS.size;
  const hi = lo + PORT_BLOCKS.size - 1;
  return { lo, hi, text: `${lo}-${hi}` };
}

/** Options for a test agent, defaults filled in with unique values. */
export async function agentOptions(overrides: Partial<RawOptions> = {}): Promise<RawOptions> {
  return {
    etcdAddr: ETCD_ADDR,
    namespace: uniqueName('test'),
    agentId: uniqueName('i-test'),
    region: 'local',
    agentPort: await freePort(),
    bindHost: '127.0.0.1',
    agentHostOverride: '127.0.0.1',
    kernelHostOverride: undefined,
    scratchRoot: await tempScratch(),
    idleTimeout: 600,
    logLevel: 'info',
    logFormat: 'text',
    ...overrides,
  };
}

/** The logger of test agents: silent unless TEST_LOG=debug|info is set. */
export function testLogger(): Logger {
  const level = process.env.TEST_LOG;
  return level === 'debug' || level === 'info' ? createLogger({ level, format: 'text' }) : silentLogger();
}

/**
 * Builds and starts an agent in this process against the real etcd, with a
 * client connected to it; both are stopped after the test. `before` runs
 * after the namespace exists and before the agent starts (to put settings).
 */
export async function startAgent(
  overrides: Partial<RawOptions> = {},
  before?: (etcd: Namespace, raw: RawOptions) => Promise<void>,
  log: Logger = testLogger(),
  parts: ConstructorParameters<typeof Agent>[2] = {},
): Promise<TestAgent> {
  const raw = await agentOptions(overrides);
  removeContainersOf(raw.agentId!);
  const { ns } = testEtcd(raw.namespace);
  const ports = nextPortBlock();
  await ns.put('config/agent/container_port_range').value(ports.text); // `before` may put another
  // The shared kernel images are under the default image_prefix: a test agent never collects them, however full this machine's disk (a test of the collector puts its own).
  await ns.put('config/agent/image_gc_high').value('100');
  await before?.(ns, raw);
  const agent = new Agent(await validateOptions(raw), log, parts);
  onCleanup(() => agent.stop());
  await agent.start();
  const client = new AgentClient(`tcp://127.0.0.1:${raw.agentPort}`, { timeoutMs: 5000 });
  onCleanup(() => client.close());
  return { agent, client, port: raw.agentPort, namespace: raw.namespace, agentId: raw.agentId!, etcd: ns, ports };
}

/**
 * Stops an in-process test agent (its containers stay) and starts a new one
 * of the same id, namespace and scratch root on a new port, with a client;
 * both are stopped after the test.
 */
export async function restartAgent(t: {
  agent: Agent;
  agentId: string;
  namespace: string;
}): Promise<{ agent: Agent; client: AgentClient }> {
  await t.agent.stop();
  const raw = await agentOptions({ agentId: t.agentId, namespace: t.namespace, scratchRoot: t.agent.options.scratchRoot });
  const agent = new Agent(await validateOptions(raw), testLogger());
  onCleanup(() => agent.stop());
  await agent.start();
  const client = new AgentClient(`tcp://127.0.0.1:${raw.agentPort}`, { timeoutMs: 5000 });
  onCleanup(() => client.close());
  return { agent, client };
}

/** An agent run as a child process (the real CLI), with its stderr collected. */
export interface SpawnedAgent {
  child: ChildProcessWithoutNullStreams;
  stderr(): string;
  /** Resolves with the exit code (or signal name) when the process ends. */
  exited: Promise<number | string>;
  /** Resolves when stderr has matched the pattern; rejects after the timeout. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
}

/** Where and as whom an agent run as a child process (with {@link spawnAgent}) serves, on loopback. */
export interface LoopbackAgent {
  namespace: string;
  agentId: string;
  /** Its RPC port. */
  port: number;
  /** Default: the shared etcd. */
  etcdAddr?: string;
  /** Default: a new temporary folder, removed after the test. */
  scratchRoot?: string;
}

/** The flags of an agent that serves on loopback only, with JSON logs: what most tests that spawn the real CLI run. */
export async function loopbackAgentFlags(a: LoopbackAgent): Promise<string[]> {
  return [
    ...['--etcd-addr', a.etcdAddr ?? ETCD_ADDR, '--namespace', a.namespace, '--agent-id', a.agentId, '--agent-port', String(a.port)],
    ...['--bind-host', '127.0.0.1', '--agent-host-override', '127.0.0.1'],
    ...['--scratch-root', a.scratchRoot ?? (await tempScratch()), '--log-format', 'json'],
  ];
}

/** The module {@link spawnAgent} preloads into agents so that their kernels take a port block of this process's lane. */
const PORT_BLOCK_PRELOAD = path.join(REPO_ROOT, 'dist/tests/helpers/port-block-preload.js');

/**
 * Runs `agent` with arguments; the process is killed after the test if still running. `via`: a
 * command that runs it (`nsenter --net=...`), which must exec it in its place.
 */
export function spawnAgent(args: string[], env: NodeJS.ProcessEnv = {}, via: string[] = []): SpawnedAgent {
  // No metrics file unless a test asks for one (--metrics or BACKEND_METRICS): the CLI's default is node_exporter's directory.
  // An agent of a namespace of the test's own gets a port block as in-process agents do (see port-block-preload.ts).
  const serves = args.includes('--namespace') && (args[0]?.startsWith('-') ?? false); // the agent itself, not a subcommand
  const preload = serves ? ['--import', PORT_BLOCK_PRELOAD] : [];
  const portEnv = serves ? { TEST_PORT_BLOCK: nextPortBlock().text } : {};
  const [file, ...before] = [...via, process.execPath];
  const child = spawn(file!, [...before, ...preload, AGENT_BIN, ...args], {
    env: { ...process.env, BACKEND_METRICS: '', ...portEnv, ...env },
  });
  let err = '';
  const listeners = new Set<() => void>();
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    for (const l of listeners) l();
  });
  child.stdout.resume();
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const agentId = serves ? args[args.indexOf('--agent-id') + 1] : undefined;
  onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    // A killed agent leaves its kernel network and chains; kernels of its own the test removes (removeContainersOf) keep them.
    if (agentId && args.includes('--agent-id') && (await containersOf(agentId)).length === 0) await removeNetworkOf(agentId);
  });
  return {
    child,
    stderr: () => err,
    exited,
    waitFor(pattern, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pattern.test(err)) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`agent stderr did not match ${pattern} within ${timeoutMs} ms; stderr so far:\n${err}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
  };
}

/** Polls until `fn` returns a truthy value; fails with `what` after the timeout. */
export async function eventually<T>(what: string, fn: () => Promise<T> | T, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
