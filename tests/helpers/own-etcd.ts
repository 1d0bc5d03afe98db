/**
 * An etcd of a test's own, on free ports with a temporary data dir, that the
 * test may pause, kill and start again on the same data (never the shared
 * one). Killed and removed after the test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import { eventually, freePort, onCleanup } from './env.js';

export interface OwnEtcd {
  addr: string;
  /** The running etcd process (a new one after {@link OwnEtcd.start}). */
  readonly proc: ChildProcess;
  /** SIGSTOP: the process stays, connections hang (the harshest outage for a client). */
  pause(): void;
  resume(): void;
  /** SIGKILL, resolved once the process is gone: an outage where connections are refused. */
  kill(): Promise<void>;
  /** Starts etcd again on the same ports and data, resolved once it answers a read. */
  start(): Promise<void>;
}

/** Starts an etcd of the test's own and resolves once it answers a read. */
export async function ownEtcd(): Promise<OwnEtcd> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'own-etcd-'));
  const [client, peer] = [await freePort(), await freePort()];
  const addr = `127.0.0.1:${client}`;
  let proc: ChildProcess | null = null;
  const start = async () => {
    proc = spawn(
      '/usr/bin/etcd',
      [
        ...['--name', 'drill', '--data-dir', dir, '--log-level', 'error'],
        ...['--listen-client-urls', `http://${addr}`, '--advertise-client-urls', `http://${addr}`],
        ...['--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`],
        ...['--initial-cluster', `drill=http://127.0.0.1:${peer}`],
      ],
      { stdio: 'ignore' },
    );
    const probe = new Etcd3({ hosts: `http://${addr}` });
    await eventually(
      'own etcd to answer',
      () =>
        probe
          .get('x')
          .string()
          .then(() => true),
      30_000,
      100,
    ).finally(() => probe.close());
  };
  const kill = async () => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise((resolve) => {
      p.once('exit', resolve);
      p.kill('SIGCONT');
      p.kill('SIGKILL');
    });
  };
  onCleanup(async () => {
    await kill();
    await fs.rm(dir, { recursive: true, force: true });
  });
  await start();
  return {
    addr,
    get proc() {
      return proc!;
    },
    pause: () => proc?.kill('SIGSTOP'),
    resume: () => proc?.kill('SIGCONT'),
    kill,
    start,
  };
}
