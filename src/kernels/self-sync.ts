/**
 * The agent's periodic self-sync: its kernel records against Docker's
 * containers carrying its own agent label (never another agent's). A record
 * whose container is gone is destroyed (reported `self-terminated`); a
 * labelled kernel container no record, creation or restart accounts for is
 * removed. Idle pooled containers are the pool's and left alone. The
 * decision is the pure {@link planSelfSync}; {@link SelfSync} runs it every
 * `self_sync_interval` seconds and logs each fix.
 */
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import type { ContainerSummary } from '../adapters/docker.js';
import { LABELS } from '../adapters/labels.js';

/** What the plan sees of a record. */
export interface SyncedRecord {
  id: string;
  containerId: string;
  state: string;
  busy: unknown;
}

/** The fixes a self-sync makes. */
export interface SelfSyncPlan {
  /** Kernel ids whose container no longer exists. */
  lostContainers: string[];
  /** Container ids of this agent's kernel containers that no kernel accounts for. */
  strays: string[];
}

/** Decides the fixes; pure. `busy(id)`: a creation, restart or destroy of that kernel id is under way. */
export function planSelfSync(
  records: readonly SyncedRecord[],
  containers: readonly ContainerSummary[],
  busy: (kernelId: string) => boolean,
): SelfSyncPlan {
  const present = new Set(containers.map((c) => c.id));
  const held = new Set(records.map((r) => r.id));
  const lostContainers = records
    .filter((r) => r.state === 'running' && !r.busy && r.containerId !== '' && !present.has(r.containerId) && !busy(r.id))
    .map((r) => r.id);
  const strays = containers
    .filter((c) => c.labels[LABELS.pool] === undefined)
    .filter((c) => {
      const kernelId = c.labels[LABELS.kernel];
      return kernelId !== undefined && !held.has(kernelId) && !busy(kernelId);
    })
    .map((c) => c.id);
  return { lostContainers, strays };
}

/** What the self-sync needs. */
export interface SelfSyncDeps {
  docker: { listByLabel(label: string): Promise<ContainerSummary[]>; remove(id: string): Promise<void> };
  agentId: string;
  records(): SyncedRecord[];
  busy(kernelId: string): boolean;
  destroy(id: string, reason: string): Promise<unknown>;
  intervalSec(): number;
  log: Logger;
}

export class SelfSync {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly deps: SelfSyncDeps) {}

  start(): void {
    const tick = () => {
      const sec = this.deps.intervalSec();
      this.timer = setTimeout(
        () => {
          if (this.stopped) return;
          this.once()
            .catch((err: unknown) =>
              this.deps.log.warn('self-sync failed; trying again at the next interval', { error: errorMessage(err) }),
            )
            .finally(tick);
        },
        (sec > 0 ? sec : 60) * 1000,
      );
      this.timer.unref();
    };
    tick();
  }

  /** One pass: lists this agent's containers and fixes what disagrees with the records. */
  async once(): Promise<SelfSyncPlan> {
    const d = this.deps;
    if (d.intervalSec() <= 0) return { lostContainers: [], strays: [] };
    const containers = await d.docker.listByLabel(`${LABELS.agent}=${d.agentId}`);
    const plan = planSelfSync(d.records(), containers, (id) => d.busy(id));
    for (const id of plan.lostContainers) {
      d.log.warn("self-sync: a kernel's container is gone; destroying the kernel", { kernelId: id });
      await d
        .destroy(id, 'self-terminated')
        .catch((err: unknown) => d.log.error('self-sync could not destroy a kernel', { kernelId: id, error: errorMessage(err) }));
    }
    for (const cid of plan.strays) {
      if (d.busy(containers.find((c) => c.id === cid)?.labels[LABELS.kernel] ?? '')) continue; // a create started meanwhile
      d.log.warn('self-sync: removing a kernel container of this agent that no kernel accounts for', { container: cid.slice(0, 12) });
      await d.docker
        .remove(cid)
        .catch((err: unknown) =>
          d.log.error('self-sync could not remove a stray container', { container: cid.slice(0, 12), error: errorMessage(err) }),
        );
    }
    return plan;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
