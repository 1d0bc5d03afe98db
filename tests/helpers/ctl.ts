/** Runs the real `agentctl` binary (dist/src/cli/agentctl.js) as a child process for the tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { onCleanup, REPO_ROOT } from './env.js';

export const AGENTCTL_BIN = path.join(REPO_ROOT, 'dist/src/cli/agentctl.js');

/** What a finished agentctl run gave. */
export interface CtlResult {
  code: number | string;
  stdout: string;
  stderr: string;
}

/** Runs agentctl to its end; `input` is written to its stdin (then closed). Killed after `timeoutMs` and in cleanup. */
export function agentctl(args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<CtlResult> {
  return startAgentctl(args, options).done;
}

/** Starts agentctl and returns the process (to signal it) and its result once it ends. */
export function startAgentctl(
  args: string[],
  options: { input?: string; timeoutMs?: number } = {},
): { child: ChildProcess; done: Promise<CtlResult> } {
  const child = spawn(process.execPath, [AGENTCTL_BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.on('error', () => undefined); // it may exit before reading
  child.stdin.end(options.input ?? '');
  // 'close' comes after the exit and after stdout and stderr are drained
  const exited = new Promise<CtlResult>((resolve) =>
    child.on('close', (code, signal) => resolve({ code: code ?? signal ?? -1, stdout, stderr })),
  );
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  onCleanup(async () => {
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  return { child, done: exited.finally(() => clearTimeout(timer)) };
}
