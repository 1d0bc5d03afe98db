/**
 * KernelWatch is the kernel service's background work: it follows Docker's
 * events for containers of this agent that die by themselves (a kernel's is
 * destroyed as `self-terminated`; an idle pooled one is the pool's to
 * replace), checks every held kernel again when the events stream comes back
 * after a Docker outage, and destroys kernels left unused for the idle
 * timeout. It decides; the service does the destroying.
 */
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import type { DockerEngine } from '../adapters/docker.js';
import { LABELS } from '../adapters/labels.js';
import { describeEnding, type Ending } from './endings.js';

/** What the watch sees of a held kernel. */
export interface WatchedKernel {
  id: string;
  containerId: string;
  state: string;
  busy: unknown;
  lastUsed: number;
  spec: { memMiB: number };
}

/** What the watch needs from the kernel service. */
export interface KernelWatchDeps {
  docker: DockerEngine;
  agentId: string;
  log: Logger;
  idleTimeoutSec(): number;
  kernels(): Iterable<WatchedKernel>;
  /** A create or claim of this kernel is under way: it finds out by itself. */
  isCreating(id: string): boolean;
  destroy(id: string, reason: string, ending?: Ending): Promise<unknown>;
  /** A container of this agent died that is no kernel's (an idle pooled one, say). */
  strayDied(containerId: string): void;
}

export class KernelWatch {
  private readonly stopped = new AbortController();
  private reaper: NodeJS.Timeout | null = null;

  constructor(private readonly deps: KernelWatchDeps) {}

  /** Starts following Docker's events and the idle reaper. */
  start(): void {
    const d = this.deps;
    void d.docker.watchDeaths(
      `${LABELS.agent}=${d.agentId}`,
      (cid) => this.onDeath(cid),
      d.log,
      this.stopped.signal,
      () => {
        this.reconcile().catch((err: unknown) =>
          d.log.warn('could not check the kernels after Docker came back', { error: errorMessage(err) }),
        );
      },
    );
    const tick = () => {
      this.reapIdle();
      const idle = d.idleTimeoutSec();
      this.reaper = setTimeout(tick, idle > 0 ? Math.min(Math.max(idle * 250, 250), 10_000) : 10_000);
    };
    tick();
  }

  stop(): void {
    this.stopped.abort();
    if (this.reaper) clearTimeout(this.reaper);
  }

  /** Treats every held kernel whose container is gone or stopped as dead (after a Docker outage). */
  private async reconcile(): Promise<void> {
    for (const rec of [...this.deps.kernels()]) {
      if (rec.state !== 'running') continue;
      const state = await this.deps.docker.inspect(rec.containerId);
      if (!state?.running) this.onDeath(rec.containerId);
    }
  }

  private onDeath(containerId: string): void {
    const d = this.deps;
    const rec = [...d.kernels()].find((r) => r.containerId === containerId);
    if (!rec) d.strayDied(containerId);
    // A claim still under way finds out by itself (its runner does not answer) and falls back to a cold create.
    if (!rec || rec.state !== 'running' || d.isCreating(rec.id)) return; // ours to remove: a destroy or restart is under way
    const id = rec.id;
    // Docker says whether the OOM killer ended it and with which exit code: the manager, the runs it held and the user are told.
    void Promise.all([d.docker.inspect(containerId).catch(() => null), d.docker.logs(containerId, 200).catch(() => '')]) // optional detail for the death's log line
      .then(([st, output]) => {
        const ending = describeEnding(st, output, rec.spec.memMiB);
        d.log.warn('kernel container died by itself', {
          kernelId: id,
          reason: ending.reason,
          detail: ending.detail,
          lastOutput: ending.tail,
        });
        return d.destroy(id, ending.reason, ending);
      })
      .catch((err: unknown) => d.log.error('clean-up of a dead kernel failed', { kernelId: id, error: errorMessage(err) }));
  }

  private reapIdle(): void {
    const d = this.deps;
    const idle = d.idleTimeoutSec();
    if (idle <= 0) return;
    const now = Date.now();
    for (const rec of d.kernels()) {
      if (rec.state !== 'running' || rec.busy || now - rec.lastUsed < idle * 1000) continue;
      d.log.info('destroying an idle kernel', { kernelId: rec.id, idleSec: Math.round((now - rec.lastUsed) / 1000) });
      d.destroy(rec.id, 'idle-timeout').catch((err: unknown) =>
        d.log.error('idle reaping failed', { kernelId: rec.id, error: errorMessage(err) }),
      );
    }
  }
}
