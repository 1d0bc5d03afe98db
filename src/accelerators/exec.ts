/**
 * Runs a probe command (nvidia-smi, ldconfig) off the event loop with a
 * timeout, in a process group of its own so that a hung command and whatever
 * it started are killed together; output is capped. Detection never trusts a
 * vendor tool to return.
 */
import { spawn } from 'node:child_process';

/** The most output a probe may print; more is a failure. */
const MAX_OUTPUT = 1024 * 1024;

/** ProbeError says why a probe gave no output: not found, timed out, or failed. */
export class ProbeError extends Error {
  constructor(
    message: string,
    readonly code: 'not-found' | 'timeout' | 'failed',
  ) {
    super(message);
  }
}

/** Runs `file args` and resolves with its stdout; rejects with a ProbeError. */
export function runProbe(file: string, args: readonly string[], timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env });
    const out: Buffer[] = [];
    let err = '';
    let size = 0;
    let done = false;
    const finish = (fn: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.stdout.destroy();
      child.stderr.destroy();
      fn();
    };
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      killGroup();
      finish(() => reject(new ProbeError(`${file} did not answer within ${timeoutMs / 1000} s and was killed`, 'timeout')));
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      size += d.length;
      if (size > MAX_OUTPUT) {
        killGroup();
        finish(() => reject(new ProbeError(`${file} printed more than ${MAX_OUTPUT} bytes`, 'failed')));
      } else out.push(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      if (err.length < 4096) err += d.toString();
    });
    child.on('error', (e: NodeJS.ErrnoException) =>
      finish(() =>
        reject(
          new ProbeError(
            e.code === 'ENOENT' ? `${file} not found` : `${file} could not be run: ${e.message}`,
            e.code === 'ENOENT' ? 'not-found' : 'failed',
          ),
        ),
      ),
    );
    child.on('close', (code, signal) => {
      if (code === 0) finish(() => resolve(Buffer.concat(out).toString('utf8')));
      else {
        const why = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        const said = err.trim().split('\n')[0]?.slice(0, 200) || Buffer.concat(out).toString('utf8').trim().split('\n')[0]?.slice(0, 200);
        finish(() => reject(new ProbeError(`${file} ${why}${said ? `: ${said}` : ''}`, 'failed')));
      }
    });
  });
}
