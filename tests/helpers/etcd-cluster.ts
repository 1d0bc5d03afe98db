/**
 * A three-member etcd cluster of a test's own, on free loopback ports with
 * temporary data dirs (never the shared etcd). A member may be killed
 * (SIGKILL) and started again on its data dir; everything is killed and
 * removed after the test, even when it fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import type { Logger } from '../../src/log.js';
import { eventually, freePort, onCleanup, reachable, uniqueName } from './env.js';

export interface ClusterMember {
  name: string;
  client: number;
  peer: number;
  dir: string;
  proc: ChildProcess | null;
}

export interface EtcdCluster {
  members: ClusterMember[];
  /** The client endpoints, comma-separated, as `--etcd-addr` takes them. */
  addr: string;
  /** SIGKILLs member i and waits for it to be gone. */
  kill(i: number): Promise<void>;
  /** Starts member i again on its data dir and waits until it listens. */
  start(i: number): Promise<void>;
  /** The index of the member that leads now (asked of the live members). */
  leader(): Promise<number>;
  /** A client of one member (closed after the test). */
  clientOf(i: number): Etcd3;
  /** A client of every member (closed after the test). */
  client(): Etcd3;
}

/** `metrics: 'extensive'` adds the gRPC latency histograms to each member's /metrics (fleet-sim reads them). */
export async function etcdCluster(size = 3, opts: { metrics?: 'basic' | 'extensive' } = {}): Promise<EtcdCluster> {
  const token = uniqueName('ec');
  const members: ClusterMember[] = [];
  for (let i = 0; i < size; i++) {
    members.push({
      name: `m${i}`,
      client: await freePort(),
      peer: await freePort(),
      dir: await fs.mkdtemp(path.join(os.tmpdir(), `${token}-m${i}-`)),
      proc: null,
    });
  }
  const initial = members.map((m) => `${m.name}=http://127.0.0.1:${m.peer}`).join(',');
  const clients: Etcd3[] = [];
  const spawnMember = (m: ClusterMember) => {
    m.proc = spawn(
      '/usr/bin/etcd',
      [
        '--name',
        m.name,
        '--data-dir',
        m.dir,
        '--listen-client-urls',
        `http://127.0.0.1:${m.client}`,
        '--advertise-client-urls',
        `http://127.0.0.1:${m.client}`,
        '--listen-peer-urls',
        `http://127.0.0.1:${m.peer}`,
        '--initial-advertise-peer-urls',
        `http://127.0.0.1:${m.peer}`,
        '--initial-cluster',
        initial,
        '--initial-cluster-token',
        token,
        '--initial-cluster-state',
        'new',
        // short election timings keep a test's leader change brief (the defaults are 100 ms / 1 s)
        '--heartbeat-interval',
        '100',
        '--election-timeout',
        '600',
        '--log-level',
        'error',
        '--metrics',
        opts.metrics ?? 'basic',
      ],
      { stdio: 'ignore' },
    );
  };
  onCleanup(async () => {
    for (const c of clients) c.close();
    for (const m of members) {
      if (m.proc && m.proc.exitCode === null && m.proc.signalCode === null) {
        m.proc.kill('SIGKILL');
        await once(m.proc, 'exit');
      }
      await fs.rm(m.dir, { recursive: true, force: true });
    }
  });
  const start = async (i: number) => {
    const m = members[i]!;
    spawnMember(m);
    await eventually(`etcd member ${m.name} to listen`, () => reachable('127.0.0.1', m.client), 20_000, 100);
  };
  // all at once: a member alone waits for its peers to form the cluster
  for (const m of members) spawnMember(m);
  for (const m of members) await eventually(`etcd member ${m.name} to listen`, () => reachable('127.0.0.1', m.client), 20_000, 100);
  const clientOf = (i: number) => {
    const c = new Etcd3({ hosts: `http://127.0.0.1:${members[i]!.client}`, dialTimeout: 2000 });
    clients.push(c);
    return c;
  };
  const cluster: EtcdCluster = {
    members,
    addr: members.map((m) => `127.0.0.1:${m.client}`).join(','),
    async kill(i) {
      const p = members[i]!.proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      p.kill('SIGKILL');
      await once(p, 'exit');
    },
    start,
    async leader() {
      return eventually(
        'an etcd leader',
        async () => {
          for (let i = 0; i < size; i++) {
            const p = members[i]!.proc;
            if (!p || p.exitCode !== null || p.signalCode !== null) continue;
            const c = new Etcd3({ hosts: `http://127.0.0.1:${members[i]!.client}`, dialTimeout: 1000 });
            try {
              const s = await c.maintenance.status({ deadline: Date.now() + 1000 });
              if (s.leader !== '0' && s.leader === s.header.member_id) return i + 1;
            } catch {
              // not answering: ask the next one
            } finally {
              c.close();
            }
          }
          return 0;
        },
        20_000,
        100,
      ).then((n) => n - 1);
    },
    clientOf,
    client() {
      const c = new Etcd3({ hosts: members.map((m) => `http://127.0.0.1:${m.client}`), dialTimeout: 2000 });
      clients.push(c);
      return c;
    },
  };
  await cluster.leader();
  return cluster;
}

/** A logger that keeps `level message {fields}` lines in memory (and prints them when TEST_LOG is set). */
export function recordingLogger(): Logger & { lines: string[]; count(re: RegExp): number } {
  const lines: string[] = [];
  const make = (bound: Record<string, unknown>): Logger => {
    const put = (level: string) => (message: string, fields?: Record<string, unknown>) => {
      const line = `${level} ${message} ${JSON.stringify({ ...bound, ...fields })}`;
      lines.push(line);
      if (process.env.TEST_LOG) process.stderr.write(line + '\n');
    };
    return { error: put('error'), warn: put('warn'), info: put('info'), debug: () => undefined, child: (f) => make({ ...bound, ...f }) };
  };
  return Object.assign(make({}), { lines, count: (re: RegExp) => lines.filter((l) => re.test(l)).length });
}
