/**
 * A redis-server of a test's own on a free port (never the shared one), that
 * the test may stop and start again on the same port. Killed and its
 * directory removed after the test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { eventually, freePort, onCleanup, reachable } from './env.js';

export interface OwnRedis {
  addr: string;
  /** Stops the server (SIGKILL: an outage without goodbye) and waits for it to be gone. */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
}

export async function ownRedis(): Promise<OwnRedis> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'own-redis-'));
  const port = await freePort();
  let proc: ChildProcess | null = null;
  const start = async () => {
    proc = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--dir', dir, '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    await eventually('own redis to listen', () => reachable('127.0.0.1', port), 20_000, 100);
  };
  const stop = async () => {
    const p = proc;
    proc = null;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  };
  onCleanup(async () => {
    await stop();
    await fs.rm(dir, { recursive: true, force: true });
  });
  await start();
  return { addr: `127.0.0.1:${port}`, stop, start };
}
