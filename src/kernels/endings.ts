/**
 * How a kernel's container ended, read before it is reported: the reason
 * (`oom-killed` when Docker says the OOM killer ended its main process,
 * else the contract's `self-terminated`), the exit code as detail, the last
 * lines it printed (for the agent's log), and the final output kept for
 * `get_logs` after the kernel is gone, with a line a user can read when the
 * OOM killer ended it. The kernel watch (src/kernels/watch.ts) reads it; the
 * service keeps the last outputs in {@link KernelEndings}.
 */
import type { ContainerState } from '../adapters/docker.js';

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
