/**
 * The bindings of the 2018 method table (src/rpc/methods.ts) onto the kernel
 * service and its relays, files and terminals: one line each, so the agent's
 * composition root only lists which groups of bindings it serves (these,
 * the images', the apps'; the modern table's in src/modern-side.ts).
 */
import { implement, type Binding } from './rpc/dispatcher.js';
import { methods, type NodeStatsResult } from './rpc/methods.js';
import type { KernelService } from './kernels/service.js';

/** The RPC methods of the kernels and what serves each; get_node_stats comes from the agent. */
export function kernelBindings(kernels: KernelService, nodeStats: () => Promise<NodeStatsResult>): Binding[] {
  return [
    implement(methods.ping, (msg) => msg),
    implement(methods.reset, async () => {
      await kernels.reset();
      return null;
    }),
    implement(methods.list_kernels, () => kernels.summaries()),
    implement(methods.create_kernel, (id, config) => kernels.create(id, config)),
    implement(methods.destroy_kernel, (id, reason) => kernels.destroy(id, reason ?? 'user-requested')),
    implement(methods.sync_kernels, async (ids) => kernels.sync.sync(ids)),
    implement(methods.restart_kernel, (id, config) => kernels.restart(id, config)),
    implement(methods.get_logs, async (id) => ({ logs: await kernels.logs(id) })),
    implement(methods.upload_file, async (id, filename, data) => {
      await (await kernels.files(id)).upload(filename, data);
      return null;
    }),
    implement(methods.download_file, async (id, filepath) => (await kernels.files(id)).download(filepath)),
    implement(methods.list_files, async (id, dir) => (await kernels.files(id)).list(dir)),
    implement(methods.execute, async (apiVersion, id, runId, mode, code, opts, flushTimeout) =>
      (await kernels.relay(id)).execute({ apiVersion, runId, mode, code, opts, flushTimeoutMs: (flushTimeout ?? 2.0) * 1000 }),
    ),
    implement(methods.interrupt_kernel, async (id) => {
      (await kernels.relay(id)).interrupt();
      return null;
    }),
    implement(methods.terminal_write, async (id, data) => {
      await (await kernels.terminal(id)).write(data);
      return null;
    }),
    implement(methods.terminal_read, async (id, cursor, timeout) => (await kernels.terminal(id)).read(cursor, (timeout ?? 0) * 1000)),
    implement(methods.terminal_resize, async (id, rows, cols) => {
      await (await kernels.relay(id)).runToEnd(`%resize ${rows} ${cols}`);
      return null;
    }),
    implement(methods.get_node_stats, nodeStats),
    implement(methods.get_completions, async (id, text, opts) => ({
      status: 'finished',
      completions: await (await kernels.relay(id)).complete(text, opts),
    })),
  ];
}
