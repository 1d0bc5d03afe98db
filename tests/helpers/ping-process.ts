/**
 * The pinger of tests/helpers/pinger.ts as a child process, for tests that
 * watch an agent's latency while something heavy goes on: timing from a
 * process of its own keeps the test's own stalls (decoding big replies) out
 * of the agent's figures.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { eventually, onCleanup, REPO_ROOT } from './env.js';

/** What a pinger measured, in ms. */
export interface PingFigures {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

/** Starts a pinger of the agent on `port` and waits until it is answered; `stop` ends it and gives its figures. */
export async function startPinger(port: number): Promise<{ stop: () => Promise<PingFigures> }> {
  const pinger = spawn(process.execPath, [path.join(REPO_ROOT, 'dist/tests/helpers/pinger.js'), `tcp://127.0.0.1:${port}`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  onCleanup(() => void pinger.kill('SIGKILL'));
  let out = '';
  pinger.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise((r) => pinger.once('exit', r));
  await eventually('the pinger to be answered', () => out.startsWith('pinging\n'), 30_000);
  return {
    stop: async () => {
      pinger.kill('SIGTERM');
      await done;
      return JSON.parse(out.slice('pinging\n'.length)) as PingFigures;
    },
  };
}
