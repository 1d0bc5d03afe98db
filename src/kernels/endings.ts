/**
 * How a kernel's container ended, read before it is reported: the reason
 * (`oom-killed` when Docker says the OOM killer ended its main process,
 * else the contract's `self-terminated`), the exit code as detail, the last
 * lines it printed (for the agent's log), and the final output kept for
 * `get_logs` after the kernel is gone, with a line a user can read when the
 * OOM killer ended it. The kernel watch (src/kernels/watch.ts) reads it; the
 * service keeps the last outputs in {@link KernelEndings}. And what
 * get_logs answers for a running kernel: the end of its output, with a
 * first line that says when earlier output was cut ({@link kernelLogs}).
 */
import { LOG_TAIL_BYTES, type ContainerState, type DockerEngine } from '../adapters/docker.js';
import type { LogTail } from '../adapters/docker-logs.js';

/** What was learned about a container's end. */
export interface Ending {
  reason: 'oom-killed' | 'self-terminated';
  /** `exit-code-<n>`, or null when Docker could not say. */
  detail: string | null;
  exitCode: number | null;
  /** The last lines the container printed (at most {@link TAIL_LINES}). */
  tail: string[];
  /** The output kept for get_logs, with the agent's closing line. */
  finalLog: string;
}

/** Lines of a dead container's output put in the agent's log. */
export const TAIL_LINES = 20;
/** Bytes of a dead kernel's output kept for get_logs. */
const KEPT_LOG_BYTES = 64 * 1024;

/** Works out how a container ended from its state (null: already gone) and its output. */
export function describeEnding(state: ContainerState | null, output: string, memMiB: number): Ending {
  const oom = state?.oomKilled === true;
  const exitCode = state?.exitCode ?? null;
  const detail = exitCode === null ? null : `exit-code-${exitCode}`;
  const lines = output.split('\n').filter((l) => l.trim() !== '');
  const closing = oom
    ? `[agent] the kernel was ended by the out-of-memory killer: its processes used all of its ${memMiB} MiB memory limit (limits.mem_slot); ask for more memory or use less (exit code ${exitCode ?? 'unknown'})`
    : `[agent] the kernel's main process ended by itself${exitCode === null ? '' : ` with exit code ${exitCode}`}`;
  const kept = output.length > KEPT_LOG_BYTES ? output.slice(-KEPT_LOG_BYTES) : output;
  return {
    reason: oom ? 'oom-killed' : 'self-terminated',
    detail,
    exitCode,
    tail: lines.slice(-TAIL_LINES),
    finalLog: `${kept}${kept === '' || kept.endsWith('\n') ? '' : '\n'}${closing}\n`,
  };
}

/** Lines of a kernel's output get_logs reads at most (Docker's `tail`); of them, at most LOG_TAIL_BYTES bytes are answered. */
const GET_LOGS_LINES = 10_000;

/** get_logs of a running kernel: the end of its container's output, read with bounded memory ({@link logsAnswer}). */
export async function kernelLogs(docker: Pick<DockerEngine, 'logTail'>, containerId: string): Promise<string> {
  return logsAnswer(await docker.logTail(containerId, GET_LOGS_LINES, LOG_TAIL_BYTES));
}

/** get_logs' answer from the end of a container's output: when earlier output was left out, a first line says so and why. */
export function logsAnswer(tail: LogTail): string {
  if (tail.cutBytes === 0 && !tail.linesFull) return tail.text;
  const left = tail.cutBytes > 0 ? ` (${tail.cutBytes} bytes of it left out here)` : '';
  return (
    `[agent] earlier output is cut${left}: get_logs answers at most the last ${GET_LOGS_LINES} lines and ${LOG_TAIL_BYTES / 1024} KiB ` +
    `of a kernel's output, and its container log keeps at most kernel_log_max_size x kernel_log_max_files on disk\n${tail.text}`
  );
}

/** KernelEndings keeps the final output of the last kernels that ended by themselves, for get_logs after they are gone. */
export class KernelEndings {
  private readonly logs = new Map<string, string>();

  constructor(private readonly keep = 32) {}

  record(kernelId: string, finalLog: string): void {
    this.logs.delete(kernelId);
    this.logs.set(kernelId, finalLog);
    while (this.logs.size > this.keep) this.logs.delete(this.logs.keys().next().value!);
  }

  /** The final output of a kernel that ended, or undefined. */
  get(kernelId: string): string | undefined {
    return this.logs.get(kernelId);
  }

  /** A kernel of this id is created again: its old ending no longer answers for it. */
  forget(kernelId: string): void {
    this.logs.delete(kernelId);
  }
}
