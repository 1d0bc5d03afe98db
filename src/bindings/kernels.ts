/**
 * The kernel lifecycle methods of the 2018 table (src/rpc/methods.ts: ping,
 * reset, list_kernels, create_kernel, destroy_kernel, sync_kernels,
 * restart_kernel, get_logs, get_node_stats) bound to the kernel service.
 * The other groups sit beside it: files.ts, runs.ts, images.ts, apps.ts
 * (and the modern table's image methods in modern-images.ts); the agent's
 * composition root only lists which groups it serves.
 */
import { Guarded, implement, type Binding } from '../rpc/dispatcher.js';
import { methods } from '../rpc/methods.js';
import { type NodeStatsResult } from '../rpc/results.js';
import type { KernelService } from '../kernels/service.js';

/** kernelBindings are the kernel lifecycle methods and what serves each; get_node_stats comes from the agent. */
export function kernelBindings(
  kernels: KernelService,
  nodeStats: () => Promise<NodeStatsResult>,
  abandonedCreates: () => boolean,
): Binding[] {
  /** A kernel a create or restart made is destroyed when nobody is left to learn of it (destroy_abandoned_creates). */
  const guard = <R>(id: string, value: R): R | Guarded<R> => (abandonedCreates() ? new Guarded(value, () => kernels.abandoned(id)) : value);
  return [
    implement(methods.ping, (msg) => msg),
    implement(methods.reset, async () => {
      await kernels.reset();
      return null;
    }),
    implement(methods.list_kernels, () => kernels.summaries()),
    implement(methods.create_kernel, async (id, config) => guard(id, await kernels.create(id, config))),
    implement(methods.destroy_kernel, (id, reason) => kernels.destroyAsked(id, reason ?? 'user-requested')),
    implement(methods.sync_kernels, async (ids) => kernels.sync.sync(ids)),
    implement(methods.restart_kernel, async (id, config) => guard(id, await kernels.restart(id, config))),
    implement(methods.get_logs, async (id) => ({ logs: await kernels.logs(id) })),
    implement(methods.get_node_stats, nodeStats),
  ];
}
