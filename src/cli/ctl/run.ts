/**
 * `agentctl run <lang> [code | -f file]`: creates a kernel (or uses
 * `--kernel`), runs the code, and streams its output as it arrives by calling
 * `execute` with mode `continue` until the run finishes. A `waiting-input`
 * is answered with a line read from stdin (a terminal or a pipe). Exits with
 * the run's exit code and destroys the kernel it created unless `--keep`,
 * also on errors and Ctrl-C (the first Ctrl-C interrupts the code, a second
 * stops waiting).
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import readline from 'node:readline';
import type { Argv } from 'yargs';
import { errorMessage, RemoteError, WireErrors } from '../../errors.js';
import type { AgentApi } from '../../rpc/api.js';
import type { RunResult } from '../../rpc/results.js';
import { action, CtlError, EXIT_USAGE, withAgent, type GlobalArgs } from './common.js';
import { followPull } from './images.js';
import { addFlags, AGENTCTL_COMMAND_FLAGS } from '../flags.js';

/**
 * Short language names and the `name:tag` they stand for (the image is the
 * agent's image prefix + this, e.g. `lablup/kernel-python:3-debian`). A lang
 * that has a `:` is used as it is; an unknown short name is passed unchanged.
 */
export const LANG_ALIASES: Readonly<Record<string, string>> = {
  python: 'python:3-debian',
  python3: 'python:3-debian',
};

/** The `name:tag` that a lang given on the command line stands for. */
export function resolveLang(lang: string): string {
  return lang.includes(':') ? lang : (LANG_ALIASES[lang] ?? lang);
}

/** Exit code when the run hit the kernel's exec timeout (as timeout(1) does). */
const EXIT_EXEC_TIMEOUT = 124;
/** Exit code after a second Ctrl-C (128 + SIGINT). */
const EXIT_INTERRUPTED = 130;

interface RunArgs extends GlobalArgs {
  lang?: string;
  code?: string;
  file?: string;
  kernel?: string;
  keep: boolean;
  cpu: number;
  mem: number;
  gpu: number;
}

/** Registers `run` on the agentctl parser. */
export function runCommand(y: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return y.command(
    'run [lang] [code]',
    'run code in a new kernel (or --kernel ID), streaming its output; exits with its exit code',
    (c) =>
      addFlags(
        c
          .positional('lang', { type: 'string', describe: `language: name:tag, or a short name (${Object.keys(LANG_ALIASES).join(', ')})` })
          .positional('code', { type: 'string', describe: 'the code to run (or -f FILE)' }),
        AGENTCTL_COMMAND_FLAGS.run,
      ),
    action<RunArgs>(async (argv) => {
      let { lang, code } = argv;
      if (argv.kernel && code === undefined && argv.file === undefined) [lang, code] = [undefined, lang]; // `run --kernel K "code"`
      if (argv.file !== undefined) {
        if (code !== undefined) throw new CtlError('give the code as an argument or with -f, not both', EXIT_USAGE);
        code = await fs.readFile(argv.file, 'utf8').catch((err: unknown) => {
          throw new CtlError(`cannot read ${argv.file}: ${errorMessage(err)}`);
        });
      }
      if (code === undefined) throw new CtlError('no code to run: give it as an argument or with -f FILE', EXIT_USAGE);
      if (!argv.kernel && !lang) throw new CtlError('give a language (e.g. python) or --kernel ID', EXIT_USAGE);
      const source = code;
      return withAgent(argv, (api) => runIn(api, argv, lang, source));
    }),
  );
}

async function runIn(api: AgentApi, argv: RunArgs, lang: string | undefined, code: string): Promise<number> {
  const created = argv.kernel ? null : `ctl-${randomBytes(6).toString('hex')}`;
  const kernelId = argv.kernel ?? created!;
  const input = new StdinLines();
  let interrupts = 0;
  let stopWaiting: (() => void) | null = null;
  const stopped = new Promise<'stopped'>((resolve) => (stopWaiting = () => resolve('stopped')));
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) {
      process.stderr.write('\nagentctl: interrupting the run (Ctrl-C again to stop waiting)\n');
      api.interruptKernel(kernelId).catch((err: unknown) => process.stderr.write(`agentctl: could not interrupt: ${errorMessage(err)}\n`));
    } else stopWaiting?.();
  };
  process.on('SIGINT', onSigint);
  try {
    if (created) {
      // A first create of an image waits for its pull: show its progress (the image name ends with the lang).
      const wanted = resolveLang(lang!);
      const creating = api.createKernel(created, { lang: wanted, limits: { cpu_slot: argv.cpu, mem_slot: argv.mem, gpu_slot: argv.gpu } });
      await followPull(api, (images) => images.find((i) => i.endsWith(wanted)), creating, process.stderr);
    }
    const steps = stream(api, kernelId, code, input);
    for (;;) {
      const next = await Promise.race([steps.next(), stopped]);
      if (next === 'stopped') return EXIT_INTERRUPTED;
      if (next.done) return next.value;
    }
  } finally {
    process.off('SIGINT', onSigint);
    input.close();
    if (created && !argv.keep) {
      await api.destroyKernel(created).catch((err: unknown) => {
        const gone = err instanceof RemoteError && err.remoteType === WireErrors.KernelNotFound;
        if (!gone) process.stderr.write(`agentctl: could not destroy kernel ${created}: ${errorMessage(err)}\n`);
      });
    } else if (created) process.stderr.write(`agentctl: kept kernel ${created}\n`);
  }
}

/** Drives one run to its end, printing each reply's output; yields after each call so the caller can stop waiting. */
async function* stream(api: AgentApi, kernelId: string, code: string, input: StdinLines): AsyncGenerator<void, number> {
  const runId = randomBytes(8).toString('hex');
  let r = await api.execute(kernelId, runId, 'query', code);
  for (;;) {
    print(r);
    switch (r.status) {
      case 'finished':
        return r.exitCode ?? 0;
      case 'exec-timeout':
        process.stderr.write("agentctl: the run exceeded the kernel's exec timeout; the agent destroyed the kernel\n");
        return EXIT_EXEC_TIMEOUT;
      case 'waiting-input': {
        const line = await input.next();
        if (line === null) process.stderr.write('agentctl: the program asks for input but stdin is at its end; sending an empty line\n');
        yield;
        r = await api.execute(kernelId, runId, 'input', line ?? '');
        break;
      }
      default: // continued, build-finished
        yield;
        r = await api.execute(kernelId, runId, 'continue', '');
    }
  }
}

/** Prints a reply's console records: stdout and stderr to ours, media and html as a note on stderr. */
function print(r: RunResult): void {
  for (const [type, data] of r.console ?? []) {
    if (type === 'stdout') process.stdout.write(String(data));
    else if (type === 'stderr') process.stderr.write(String(data));
    else if (type === 'media') {
      const [mime, body] = Array.isArray(data) ? (data as [unknown, unknown]) : ['unknown', data];
      process.stderr.write(`[media ${String(mime)}, ${typeof body === 'string' ? body.length : 0} characters not shown]\n`);
    } else if (type === 'html') process.stderr.write(`[html, ${String(data).length} characters not shown]\n`);
    else process.stderr.write(`[${type}] ${typeof data === 'string' ? data : JSON.stringify(data)}\n`);
  }
}

/** Lines of stdin, read only when a program asks for input (so stdin is untouched otherwise). */
class StdinLines {
  private rl: readline.Interface | null = null;
  private lines: AsyncIterator<string> | null = null;

  /** The next line, or null at the end of stdin. */
  async next(): Promise<string | null> {
    if (!this.lines) {
      this.rl = readline.createInterface({ input: process.stdin, terminal: false });
      this.lines = this.rl[Symbol.asyncIterator]();
    }
    const r = await this.lines.next();
    return r.done ? null : r.value;
  }

  close(): void {
    this.rl?.close();
  }
}
