/**
 * An etcd of a test's own, on free ports with a temporary data dir, that the
 * test may stop, pause and restart (never the shared one). Killed and removed
 * after the test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { eventually, freePort, onCleanup, reachable } from './env.js';

export interface OwnEtcd {
  addr: string;
  proc: ChildProcess;
  /** SIGSTOP: the process stays, connections hang (the harshest outage for a client). */
  pause(): void;
  resume(): void;
}

export async function ownEtcd(): Promise<OwnEtcd> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'own-etcd-'));
  const [client, peer] = [await freePort(), await freePort()];
  const proc = spawn(
    '/usr/bin/etcd',
    [
      '--name',
      'drill',
      '--data-dir',
      dir,
      '--listen-client-urls',
      `http://127.0.0.1:${client}`,
      '--advertise-client-urls',
      `http://127.0.0.1:${client}`,
      '--listen-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-cluster',
      `drill=http://127.0.0.1:${peer}`,
      '--log-level',
      'error',
    ],
    { stdio: 'ignore' },
  );
  onCleanup(async () => {
    proc.kill('SIGCONT');
    proc.kill('SIGKILL');
    await fs.rm(dir, { recursive: true, force: true });
  });
  await eventually('own etcd to listen', () => reachable('127.0.0.1', client), 20_000, 100);
  return { addr: `127.0.0.1:${client}`, proc, pause: () => proc.kill('SIGSTOP'), resume: () => proc.kill('SIGCONT') };
}
