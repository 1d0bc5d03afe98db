/**
 * The listings of the kernels held, taken out of the kernel service
 * (src/kernels/service.ts), which passes its records: the cgroup figures of
 * each running kernel (heartbeat, get_node_stats) and list_kernels' summaries.
 */
import { errorMessage } from '../errors.js';
import type { KernelStats, KernelSummary } from '../rpc/results.js';
import { appStates } from './apps.js';
import { statsTarget, type KernelRecord, type KernelServiceDeps } from './record.js';

/** What the listings read of the kernel service's dependencies. */
type ListingDeps = Pick<KernelServiceDeps, 'stats' | 'log' | 'kernelHost'>;

/**
 * Samples the cgroup figures (KernelService.sampleStats): reads them of every running kernel (never the Docker stats
 * API), by kernel id; a kernel whose figures cannot be read is left out.
 */
export async function sampleStats(deps: ListingDeps, records: KernelRecord[]): Promise<Record<string, KernelStats>> {
  const live = records.filter((rec) => rec.state === 'running' && rec.containerId !== '');
  const read = await Promise.all(
    live.map((rec) =>
      deps.stats.read(statsTarget(rec)).catch((err: unknown) => {
        deps.log.debug('could not read kernel stats', { kernelId: rec.id, error: errorMessage(err) });
        return null;
      }),
    ),
  );
  return Object.fromEntries(live.flatMap((rec, i) => (read[i] ? [[rec.id, read[i]]] : [])));
}

/** The list_kernels answer: every kernel held, with its current CPU time and memory (a cgroup read each, no scratch walk). */
export async function summaries(deps: ListingDeps, records: KernelRecord[]): Promise<KernelSummary[]> {
  return Promise.all(
    records.map(async (rec) => {
      const usage = await deps.stats.readUsage({ containerId: rec.containerId, pid: rec.pid }).catch(() => null); // optional: a kernel going away has no usage to read
      return {
        id: rec.id,
        lang: rec.spec.lang,
        image: rec.spec.image,
        state: rec.state,
        container_id: rec.containerId,
        cpu_set: rec.cpuSet,
        mem_mib: rec.spec.memMiB,
        created_at: rec.createdAt / 1000,
        last_used: rec.lastUsed / 1000,
        cpu_used: usage?.cpu_used ?? null,
        mem_cur_bytes: usage?.mem_cur_bytes ?? null,
        services: appStates(rec, deps.kernelHost),
      };
    }),
  );
}
