/**
 * The cost of a change on the RPC path: the rpc figure's load (ping from
 * the C load generator, bench/native/zmq-load.c) against two builds of the
 * agent side by side, this checkout's and another checkout's (`--base`,
 * compiled), in interleaved rounds (A B, then B A), with each server's CPU
 * per request; then the dispatcher alone (`Dispatcher.handle` of ping, no
 * socket) of both builds, interleaved, in ns per call. On a shared machine
 * the throughput moves with the machine; the CPU per request and the
 * dispatcher's ns per call are what resolve a few percent.
 *
 *   git -C /path/to/checkout archive <commit> | tar -x -C /tmp/base && (cd /tmp/base && ln -s $PWD/node_modules && npx tsc)
 *   node dist/bench/ab-rpc.js --base /tmp/base [--rounds 20] [--burst 700] [--levels 16,128]
 *
 * Each agent runs with its own etcd namespace, scratch root and port, and is
 * stopped, its namespace, scratch root and kernel network removed, at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import Docker from 'dockerode';
import { Etcd3 } from 'etcd3';
import { AgentClient } from '../src/rpc/client.js';
import { methods } from '../src/rpc/methods.js';
import { removeKernelNetwork } from '../src/containers/kernel-network.js';
import { DockerNetworks } from '../src/adapters/docker-networks.js';
import { cLoad } from './lib/cload.js';
import { cpuNs } from './lib/proc.js';
import { freePort } from './lib/ports.js';
import { ETCD_ADDR, REPO_ROOT } from './lib/env.js';
import { median } from './lib/stats.js';

interface Built {
  label: string;
  root: string;
}

interface Running extends Built {
  ns: string;
  id: string;
  scratch: string;
  proc: ChildProcess;
  endpoint: string;
}

const med = (v: number[]) => median([...v].sort((a, b) => a - b));

async function startAgent(b: Built, run: string): Promise<Running> {
  const ns = `${run}-${b.label}`;
  const id = `i-${ns}`;
  const port = await freePort();
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'ab-rpc-'));
  const args = [path.join(b.root, 'dist/src/cli/agent.js'), '--etcd-addr', ETCD_ADDR, '--namespace', ns, '--agent-id', id];
  args.push('--agent-port', String(port), '--bind-host', '127.0.0.1', '--agent-host-override', '127.0.0.1');
  args.push('--scratch-root', scratch, '--log-level', 'error', '--metrics', '');
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const r = { ...b, ns, id, scratch, proc, endpoint: `tcp://127.0.0.1:${port}` };
  const client = new AgentClient(r.endpoint, { timeoutMs: 60_000 });
  try {
    await client.callWithTimeout(60_000, methods.ping, 'ready?');
  } finally {
    client.close();
  }
  return r;
}

async function stopAgent(a: Running, etcd: Etcd3, docker: Docker): Promise<void> {
  if (a.proc.exitCode === null && a.proc.signalCode === null) {
    const gone = new Promise((r) => a.proc.once('exit', r));
    a.proc.kill('SIGTERM');
    await Promise.race([gone, new Promise((r) => setTimeout(r, 15_000))]);
    if (a.proc.exitCode === null && a.proc.signalCode === null) a.proc.kill('SIGKILL');
  }
  await removeKernelNetwork(a.id, new DockerNetworks(docker));
  await etcd.namespace(`/sorna/${a.ns}/`).delete().all();
  rmSync(a.scratch, { recursive: true, force: true });
}

/** ns per call of `Dispatcher.handle(ping)` of each build, best and median of interleaved runs of a million calls. */
async function dispatchAlone(builds: Built[]): Promise<Record<string, number[]>> {
  const handles: Record<string, (r: unknown) => { ok: boolean }> = {};
  for (const b of builds) {
    const d = (await import(path.join(b.root, 'dist/src/rpc/dispatcher.js'))) as typeof import('../src/rpc/dispatcher.js');
    const m = (await import(path.join(b.root, 'dist/src/rpc/methods.js'))) as typeof import('../src/rpc/methods.js');
    const l = (await import(path.join(b.root, 'dist/src/log.js'))) as typeof import('../src/log.js');
    const dispatcher = new d.Dispatcher([d.implement(m.methods.ping, (msg) => msg)], l.silentLogger());
    handles[b.label] = dispatcher.handle as (r: unknown) => { ok: boolean };
  }
  const request = { kind: 'request', method: 'ping', args: ['ping'], kwargs: {} };
  const out: Record<string, number[]> = {};
  const n = 1_000_000;
  let ok = 0;
  for (let round = 0; round < 15; round++) {
    for (const b of round % 2 ? [...builds].reverse() : builds) {
      const handle = handles[b.label]!;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) if (handle(request).ok) ok++;
      (out[b.label] ??= []).push(Number(process.hrtime.bigint() - t0) / n);
    }
  }
  if (ok !== 15 * n * builds.length) throw new Error('a ping failed in the dispatcher');
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      base: { type: 'string' },
      rounds: { type: 'string', default: '20' },
      burst: { type: 'string', default: '700' },
      levels: { type: 'string', default: '16,128' },
    },
  });
  if (!values.base) throw new Error('--base DIR is required: a checkout of the build to compare with, compiled (npx tsc)');
  const rounds = Number(values.rounds);
  const burstMs = Number(values.burst);
  const levels = values.levels.split(',').map(Number);
  const builds: Built[] = [
    { label: 'base', root: path.resolve(values.base) },
    { label: 'this', root: REPO_ROOT },
  ];
  const etcd = new Etcd3({ hosts: `http://${ETCD_ADDR}` });
  const docker = new Docker();
  const running: Running[] = [];
  const run = `ab-rpc-${process.pid}`;
  try {
    for (const b of builds) running.push(await startAgent(b, run));
    for (const a of running) await cLoad(a.endpoint, 128, 300); // warm-up
    const rate: Record<string, number[]> = {};
    const cpu: Record<string, number[]> = {};
    for (let round = 0; round < rounds; round++) {
      for (const n of levels) {
        for (const a of round % 2 ? [...running].reverse() : running) {
          const c0 = await cpuNs(a.proc.pid!);
          const r = await cLoad(a.endpoint, n, burstMs);
          (rate[`${a.label}@${n}`] ??= []).push(r.rate);
          (cpu[`${a.label}@${n}`] ??= []).push(((await cpuNs(a.proc.pid!)) - c0) / 1000 / r.completed);
        }
      }
    }
    console.log(`| in flight | base req/s | this req/s | this/base | base CPU µs/req | this CPU µs/req | this/base |`);
    console.log(`| --- | --- | --- | --- | --- | --- | --- |`);
    for (const n of levels) {
      const [ra, rb, ca, cb] = [rate[`base@${n}`]!, rate[`this@${n}`]!, cpu[`base@${n}`]!, cpu[`this@${n}`]!];
      const perRound = ra.map((v, i) => rb[i]! / v);
      console.log(
        `| ${n} | ${med(ra).toFixed(0)} | ${med(rb).toFixed(0)} | ${(med(rb) / med(ra)).toFixed(3)} ` +
          `(per round ${Math.min(...perRound).toFixed(2)}-${Math.max(...perRound).toFixed(2)}) | ` +
          `${med(ca).toFixed(2)} | ${med(cb).toFixed(2)} | ${(med(cb) / med(ca)).toFixed(3)} |`,
      );
    }
  } finally {
    for (const a of running) await stopAgent(a, etcd, docker).catch((err: unknown) => console.error(`clean-up of ${a.id}:`, err));
    etcd.close();
  }
  const d = await dispatchAlone(builds);
  const best = (k: string) => Math.min(...d[k]!);
  console.log(
    `dispatcher alone, ns per ping: base best ${best('base').toFixed(0)} median ${med(d.base!).toFixed(0)}, ` +
      `this best ${best('this').toFixed(0)} median ${med(d.this!).toFixed(0)}; added ${(best('this') - best('base')).toFixed(0)} (best), ` +
      `${(med(d.this!) - med(d.base!)).toFixed(0)} (median)`,
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
