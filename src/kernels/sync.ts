/**
 * Reconciliation of the agent's kernels with the manager's list
 * (`sync_kernels`, beyond the 2018 set). The decision is a pure function,
 * {@link planSync}: kernels the agent has that the list lacks are marked,
 * and destroyed with reason `not-found-in-manager` once they have stayed
 * unlisted for the grace period (`sync_grace`; 0 = report only); ids the
 * list has that the agent lacks are answered as `missing` and reported with
 * `kernel_terminated [id, 'already-terminated', null]`. {@link KernelSync}
 * is the small service that keeps the marks, acts on a plan and checks the
 * marks again when their grace runs out.
 */
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import type { AgentEventName } from '../events/catalogue.js';
import type { SyncResult } from '../rpc/results.js';

/** What a plan is made from. */
export interface SyncInput {
  /** Ids of the kernels the agent holds, creations under way included. */
  held: readonly string[];
  /** Ids the manager listed. */
  listed: readonly string[];
  /** When each unlisted kernel was first seen unlisted (ms). */
  marks: ReadonlyMap<string, number>;
  now: number;
  /** Seconds an unlisted kernel may stay before it is destroyed; 0 = never (report only). */
  graceSec: number;
}

/** A plan: the result, and the marks to keep from now on. */
export interface SyncPlan {
  result: SyncResult;
  marks: Map<string, number>;
}

/** Decides what a sync does; pure. */
export function planSync(i: SyncInput): SyncPlan {
  const listed = new Set(i.listed);
  const held = new Set(i.held);
  const missing = [...listed].filter((id) => !held.has(id)).sort();
  const extra = [...held].filter((id) => !listed.has(id)).sort();
  const marks = new Map<string, number>();
  const destroyed: string[] = [];
  const pending: string[] = [];
  for (const id of extra) {
    const since = i.marks.get(id) ?? i.now;
    if (i.graceSec > 0 && i.now - since >= i.graceSec * 1000) destroyed.push(id);
    else {
      marks.set(id, since);
      pending.push(id);
    }
  }
  return { result: { missing, extra, destroyed, pending }, marks };
}

/** What the sync service needs from the kernel service. */
export interface KernelSyncDeps {
  held(): string[];
  destroy(id: string, reason: string): Promise<unknown>;
  emit(name: AgentEventName, args: unknown[]): void;
  graceSec(): number;
  log: Logger;
}

export class KernelSync {
  private marks = new Map<string, number>();
  private lastListed: string[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly deps: KernelSyncDeps) {}

  /** sync_kernels: compares, reports, and destroys what has been unlisted for the grace period. */
  sync(listed: readonly string[]): SyncResult {
    this.lastListed = [...listed];
    return this.apply(true);
  }

  private apply(reportMissing: boolean): SyncResult {
    const d = this.deps;
    const plan = planSync({ held: d.held(), listed: this.lastListed, marks: this.marks, now: Date.now(), graceSec: d.graceSec() });
    this.marks = plan.marks;
    if (reportMissing) for (const id of plan.result.missing) d.emit('kernel_terminated', [id, 'already-terminated', null]);
    for (const id of plan.result.destroyed) {
      d.log.warn('destroying a kernel the manager does not list', { kernelId: id, graceSec: d.graceSec() });
      d.destroy(id, 'not-found-in-manager').catch((err: unknown) =>
        d.log.error('destroying a kernel the manager does not list failed', { kernelId: id, error: errorMessage(err) }),
      );
    }
    if (plan.result.extra.length || plan.result.missing.length) d.log.info('synced kernels with the manager', { ...plan.result });
    this.plan();
    return plan.result;
  }

  /** Looks again when the oldest mark's grace runs out (against the last list the manager sent). */
  private plan(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const grace = this.deps.graceSec();
    if (grace <= 0 || this.marks.size === 0) return;
    const due = Math.min(...this.marks.values()) + grace * 1000 - Date.now();
    this.timer = setTimeout(() => void this.apply(false), Math.max(0, due) + 10);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
