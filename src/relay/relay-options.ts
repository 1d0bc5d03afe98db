/**
 * The contract of a kernel relay (src/relay/kernel-relay.ts) with its owner:
 * what `execute` asks of it ({@link ExecuteRequest}) and what it is opened
 * with ({@link KernelRelayOptions}).
 */
import type { Logger } from '../log.js';
import type { Run } from './runs.js';

/** What `execute` asks of the relay, its arguments already checked. */
export interface ExecuteRequest {
  apiVersion: number;
  runId: string | null;
  mode: 'query' | 'batch' | 'input' | 'continue';
  code: string;
  opts: Record<string, unknown>;
  flushTimeoutMs: number;
}

/** Options of {@link KernelRelay}. */
export interface KernelRelayOptions {
  host: string;
  replInPort: number;
  replOutPort: number;
  log: Logger;
  /** Seconds a run may take once the runner starts it (0 = no limit). */
  execTimeoutSec: number;
  /** Called once when a run exceeds the exec timeout; the kernel is then destroyed. */
  onExecTimeout(): void;
  /** Files under /home/work/.output created or changed since a time (ms), for finished runs. */
  outputFiles(sinceMs: number): Promise<Array<{ name: string; size: number }>>;
  /** The runner restarted; `line` says how the previous one ended. */
  onRunnerRestart?(line: string): void;
  /** The kernel's OOM kills so far (null: unknown), to tell an OOM kill from another SIGKILL. */
  oomKills?(): Promise<number | null>;
  /** The kernel's memory limit in MiB, for the message of an OOM kill. */
  memLimitMiB?: number;
  /** The kernel was re-adopted from a previous agent: runs its runner still holds are taken over, others are lost. */
  takeOver?: boolean;
  /** Runs a previous relay of the kernel ended (a restart) that were not collected yet. */
  inherited?: Run[];
}
