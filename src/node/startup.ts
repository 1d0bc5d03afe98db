/**
 * The node start-up script (setting `node_startup_script`): a host
 * executable run once at agent start, before the agent registers, to
 * prepare the node (mount, install drivers, warm caches). It must be a
 * regular file owned by root and not writable by group or others (the agent
 * usually runs as root, so anyone who can write the script owns the node);
 * anything else is refused before it runs. Its stdout and stderr go to the
 * agent log line by line; it is killed (its whole process group) at
 * `node_startup_timeout`.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import readline from 'node:readline';
import type { Logger } from '../log.js';
import { ConfigError } from '../errors.js';

/** Why a script may not run, or null when it may. */
export async function startupScriptProblem(file: string): Promise<string | null> {
  let st;
  try {
    st = await fs.stat(file);
  } catch (err) {
    return `node_startup_script ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`;
  }
  const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
  if (!st.isFile()) return `node_startup_script ${file} is not a regular file`;
  if (st.uid !== 0) return `node_startup_script ${file} is owned by uid ${st.uid}, not root: chown root ${file}`;
  if (st.mode & 0o022) return `node_startup_script ${file} is writable by group or others (mode ${mode}): chmod go-w ${file}`;
  if (!(st.mode & 0o100)) return `node_startup_script ${file} is not executable by its owner (mode ${mode}): chmod u+x ${file}`;
  return null;
}

/** How a start-up script ended. */
export interface StartupResult {
  ok: boolean;
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  seconds: number;
}

/** Runs the script with its output in the log; resolves when it has ended (killed at the timeout). */
export async function runStartupScript(file: string, timeoutSec: number, log: Logger, signal?: AbortSignal): Promise<StartupResult> {
  const t0 = Date.now();
  const child = spawn(file, [], { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, AGENT_STARTUP: '1' } });
  const kill = () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    log.error(`node start-up script ran past node_startup_timeout (${timeoutSec} s); killing it`, { script: file });
    kill();
  }, timeoutSec * 1000);
  signal?.addEventListener('abort', kill, { once: true });
  const lines = (stream: NodeJS.ReadableStream, name: string) =>
    new Promise<void>((resolve) => {
      const rl = readline.createInterface({ input: stream });
      rl.on('line', (line) => log.info(`start-up script: ${line}`, { script: file, stream: name }));
      rl.on('close', resolve);
    });
  const [ended] = await Promise.all([
    new Promise<{ code: number | null; signal: string | null }>((resolve) => {
      child.on('error', (err) => {
        log.error('node start-up script could not be started', { script: file, error: err.message });
        resolve({ code: 127, signal: null });
      });
      child.on('exit', (code, sig) => {
        kill(); // what it left running in its group would hold its output open
        resolve({ code, signal: sig });
      });
    }),
    lines(child.stdout, 'stdout'),
    lines(child.stderr, 'stderr'),
  ]);
  clearTimeout(timer);
  signal?.removeEventListener('abort', kill);
  kill(); // anything it left running in its group
  const result = { ok: !timedOut && ended.code === 0, ...ended, timedOut, seconds: (Date.now() - t0) / 1000 };
  log.info('node start-up script ended', { script: file, exitCode: ended.code, signal: ended.signal, timedOut, seconds: result.seconds });
  return result;
}

/**
 * Runs the start-up script the settings name, if any, at agent start: a
 * refused or failed script stops the start (`abort`, a ConfigError saying
 * so) or is logged as one warning line (`continue`).
 */
export async function nodeStartup(
  s: { nodeStartupScript: string; nodeStartupTimeoutSec: number; nodeStartupFailure: 'abort' | 'continue' },
  log: Logger,
  signal?: AbortSignal,
): Promise<void> {
  const file = s.nodeStartupScript;
  if (!file) return;
  const problem = await startupScriptProblem(file);
  let why: string;
  if (problem) why = `${problem}; it was not run`;
  else {
    log.info('running the node start-up script', { script: file, timeoutSec: s.nodeStartupTimeoutSec });
    const r = await runStartupScript(file, s.nodeStartupTimeoutSec, log, signal);
    signal?.throwIfAborted();
    if (r.ok) return;
    why = r.timedOut
      ? `node start-up script ${file} ran past node_startup_timeout (${s.nodeStartupTimeoutSec} s) and was killed`
      : `node start-up script ${file} failed (${r.code === null ? `killed by ${r.signal}` : `exit code ${r.code}`}); its output is in the log above`;
  }
  if (s.nodeStartupFailure === 'abort') throw new ConfigError(`${why}; node_startup_failure is abort, so the agent does not start`);
  log.warn(`${why}; node_startup_failure is continue, so the agent starts anyway`, { script: file });
}
