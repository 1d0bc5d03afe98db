/**
 * The methods of the 2018 table that talk to a kernel's runner (execute,
 * interrupt_kernel, get_completions, terminal_write, terminal_read,
 * terminal_resize; src/rpc/methods.ts) bound to its relay and terminal
 * (src/relay/).
 */
import { implement, type Binding } from '../rpc/dispatcher.js';
import { methods } from '../rpc/methods.js';
import type { KernelService } from '../kernels/service.js';

/** runBindings are the runner methods and what serves each. */
export function runBindings(kernels: KernelService): Binding[] {
  return [
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
    implement(methods.get_completions, async (id, text, opts) => ({
      status: 'finished',
      completions: await (await kernels.relay(id)).complete(text, opts),
    })),
  ];
}
