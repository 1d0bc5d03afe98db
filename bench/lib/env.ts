/**
 * BenchEnv owns what a benchmark run starts: the agent (the real CLI as a
 * child process, on a unique etcd namespace, port and scratch root), child
 * servers, and every container of the run. Containers carry a label with the
 * run's id (or the agent's own label with the run's agent id), and
 * {@link BenchEnv.close} removes them all, on success, on failure and on
 * SIGINT (the runner calls it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { Etcd3 } from 'etcd3';
import { errorMessage } from '../../src/errors.js';
import { LABELS } from '../../src/adapters/labels.js';
import { DockerNetworks } from '../../src/adapters/docker-networks.js';
import { removeKernelNetwork } from '../../src/containers/kernel-network.js';
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import { freePort } from './ports.js';

/** The repository root (this file runs from dist/bench/lib). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const ETCD_ADDR = process.env.BACKEND_ETCD_ADDR ?? '127.0.0.1:2379';
/** The kernel image (`<prefix><lang>`) every kernel of the benchmarks runs. */
export const IMAGE_PREFIX = 'lablup/kernel-';
export const KERNEL_LANG = process.env.BENCH_KERNEL_LANG ?? 'python:3-debian';
/** The label on containers the benchmarks create themselves (value: the run id). */
export const BENCH_LABEL = 'io.compute-agent.bench-run';

/** The agent a run talks to. */
export interface BenchAgent {
  endpoint: string;
  agentId: string;
  client: AgentClient;
  /** The agent process, for figures that read /proc. */
  pid: number;
}

/** A second agent of the run, with settings of its own (e.g. a warm pool). */
export interface AgentVariant {
  /** Part of its namespace and agent id. */
  name: string;
  /** etcd settings below `config/agent/`, put before it starts. */
  settings: Record<string, string>;
  /** Extra command-line flags. */
  args: string[];
  /** Other keys of its etcd namespace, put before it starts (e.g. `nodes/manager/event_addr`). */
  keys?: Record<string, string>;
}

/** Resolves once something listens on 127.0.0.1:`port`; fails after `timeoutMs` or as soon as `failed` returns an error. */
async function waitListening(port: number, timeoutMs: number, failed: () => Error | null): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const err = failed();
    if (err) throw err;
    const up = await new Promise<boolean>((resolve) => {
      const sock = net.connect(port, '127.0.0.1');
      sock.once('connect', () => (sock.destroy(), resolve(true)));
      sock.once('error', () => resolve(false));
    });
    if (up) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A child process that stops with the run; `stderr()` is what it printed there. */
export interface Child {
  proc: ChildProcess;
  stderr(): string;
}

export class BenchEnv {
  /** Unique per run: names, the etcd namespace and the container label derive from it. */
  readonly runId = `bench-${randomBytes(4).toString('hex')}`;
  readonly docker = new Docker();
  private readonly cleanups: Array<() => Promise<void> | void> = [];
  private readonly agents = new Map<string, Promise<BenchAgent>>();
  private closing: Promise<void> | null = null;

  /** Registers something to undo at close, last first. */
  onClose(fn: () => Promise<void> | void): void {
    this.cleanups.push(fn);
  }

  /** A fresh temporary directory, removed at close. */
  async tempDir(prefix: string): Promise<string> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), `${prefix}-`));
    this.onClose(() => fs.rm(dir, { recursive: true, force: true }));
    return dir;
  }

  /** The machine the figures were measured on. */
  hostInfo(): { cpus: number; loadavg: number[]; node: string } {
    return { cpus: os.cpus().length, loadavg: os.loadavg().map((l) => Math.round(l * 100) / 100), node: process.version };
  }

  /** Starts a child process that is stopped (SIGTERM, then SIGKILL after 15 s) at close. */
  spawnChild(cmd: string, args: string[]): Child {
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-20_000)));
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    this.onClose(async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    });
    return { proc, stderr: () => err };
  }

  /** Resolves once a child prints `ready` on stdout; fails if it exits first or after the timeout. */
  waitForOutput(child: Child, ready: RegExp, timeoutMs = 30_000): Promise<void> {
    const name = path.basename(child.proc.spawnfile);
    let out = '';
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${name} did not become ready within ${timeoutMs} ms; stderr:\n${child.stderr()}`)),
        timeoutMs,
      );
      child.proc.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (ready.test(out)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.proc.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (${code ?? sig}) before it was ready; stderr:\n${child.stderr()}`));
      });
    });
  }

  /** The run's agent (or a variant of it), started on first use and shared by the figures. */
  agent(variant?: AgentVariant): Promise<BenchAgent> {
    const key = variant?.name ?? '';
    let p = this.agents.get(key);
    if (!p) {
      p = this.startAgent(variant);
      this.agents.set(key, p);
    }
    return p;
  }

  private async startAgent(variant?: AgentVariant): Promise<BenchAgent> {
    const a = await this.restartableAgent(variant);
    await a.start();
    return a.current();
  }

  /**
   * An agent of the run that a figure may kill (SIGKILL, so that its
   * kernels stay) and start again with the same id, namespace, port and
   * scratch root; `start` resolves with the milliseconds from spawning the
   * process until it answers `ping` (its RPC socket binds after re-adopting
   * the kernels it finds). Not shared with other figures.
   */
  async restartableAgent(variant?: AgentVariant): Promise<{ start(): Promise<number>; kill(): Promise<void>; current(): BenchAgent }> {
    const namespace = variant ? `${this.runId}-${variant.name}` : this.runId;
    const agentId = `i-${namespace}`;
    const port = await freePort();
    const scratch = await this.tempDir('bench-scratch');
    const [host, etcdPort] = ETCD_ADDR.split(':');
    const etcd = new Etcd3({ hosts: `http://${host}:${etcdPort}` });
    const ns = etcd.namespace(`/sorna/${namespace}/`);
    this.onClose(async () => {
      await ns
        .delete()
        .all()
        .catch(() => undefined);
      etcd.close();
    });
    // Two kernels share core 0 in the execute figure; the allocator would refuse that at the default of 1.
    await ns.put('config/agent/cpu_overcommit').value('4');
    for (const [k, v] of Object.entries(variant?.settings ?? {})) await ns.put(`config/agent/${k}`).value(v);
    for (const [k, v] of Object.entries(variant?.keys ?? {})) await ns.put(k).value(v);
    this.onClose(async () => {
      await this.removeContainers(`${LABELS.agent}=${agentId}`);
      await removeKernelNetwork(agentId, new DockerNetworks(this.docker)); // a killed agent leaves them
    });
    const bin = path.join(REPO_ROOT, 'dist/src/cli/agent.js');
    // BENCH_AGENT_NODE_ARGS: node flags for the agents of the run, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile them.
    const nodeArgs = (process.env.BENCH_AGENT_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
    const args = [
      ...nodeArgs,
      bin,
      '--etcd-addr',
      ETCD_ADDR,
      '--namespace',
      namespace,
      '--agent-id',
      agentId,
      '--agent-port',
      String(port),
      '--bind-host',
      '127.0.0.1',
      '--agent-host-override',
      '127.0.0.1',
      '--scratch-root',
      scratch,
      '--log-level',
      'warn',
      '--metrics',
      '',
      ...(variant?.args ?? []),
    ];
    const endpoint = `tcp://127.0.0.1:${port}`;
    let agent: BenchAgent | null = null;
    let child: Child | null = null;
    return {
      start: async () => {
        if (child && child.proc.exitCode === null && child.proc.signalCode === null) throw new Error(`agent ${agentId} is running already`);
        const t0 = performance.now();
        const c = (child = this.spawnChild(process.execPath, args));
        // BENCH_AGENT_STDOUT: a file to append the agents' stdout to (e.g. what --trace-gc prints); else it is discarded.
        if (process.env.BENCH_AGENT_STDOUT) c.proc.stdout!.pipe(createWriteStream(process.env.BENCH_AGENT_STDOUT, { flags: 'a' }));
        else c.proc.stdout!.resume();
        const exited = () =>
          c.proc.exitCode !== null || c.proc.signalCode !== null
            ? new Error(`the agent exited (${c.proc.exitCode ?? c.proc.signalCode}) at start; its stderr:\n${c.stderr()}`)
            : null;
        // Until the port listens (polled every 5 ms: a DEALER would only retry every 100 ms), then a ping on a new client.
        await waitListening(port, 60_000, exited);
        const client = new AgentClient(endpoint, { timeoutMs: 60_000 });
        this.onClose(() => client.close());
        try {
          await client.callWithTimeout(30_000, methods.ping, 'ready?');
        } catch (err) {
          throw exited() ?? new Error(`the agent did not answer ping (${errorMessage(err)}); its stderr:\n${c.stderr()}`);
        }
        const ms = performance.now() - t0;
        agent?.client.close();
        agent = { endpoint, agentId, client, pid: c.proc.pid! };
        return ms;
      },
      kill: async () => {
        const c = child;
        if (!c || c.proc.exitCode !== null || c.proc.signalCode !== null) return;
        const gone = new Promise((r) => c.proc.once('exit', r));
        c.proc.kill('SIGKILL');
        await gone;
      },
      current: () => {
        if (!agent) throw new Error(`agent ${agentId} has not started`);
        return agent;
      },
    };
  }

  /** Removes every container carrying a label filter (`key=value`); never others. */
  async removeContainers(labelFilter: string): Promise<void> {
    const list = await this.docker.listContainers({ all: true, filters: { label: [labelFilter] } });
    await Promise.all(
      list.map((c) =>
        this.docker
          .getContainer(c.Id)
          .remove({ force: true })
          .catch(() => undefined),
      ),
    );
  }

  /** Undoes everything, last first; a failing step is reported and the rest still runs. A second call waits for the first. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.onClose(() => this.removeContainers(`${BENCH_LABEL}=${this.runId}`)); // runs first
      while (this.cleanups.length) {
        const fn = this.cleanups.pop()!;
        try {
          await fn();
        } catch (err) {
          console.error(`bench: cleanup step failed: ${errorMessage(err)}`);
        }
      }
    })();
    return this.closing;
  }
}
