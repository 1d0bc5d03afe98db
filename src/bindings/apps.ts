/**
 * The RPCs of docs/service-ports.rst: ping_kernel, start_service and
 * shutdown_service, served by KernelApps (src/kernels/apps.ts).
 */
import type { Logger } from '../log.js';
import { implement, type Binding } from '../rpc/dispatcher.js';
import { methods } from '../rpc/methods.js';
import type { KernelApps } from '../kernels/apps.js';

/** appBindings are the service-port methods and what serves each; ping_kernel's round trip is logged at debug. */
export function appBindings(apps: KernelApps, log: Logger): Binding[] {
  return [
    implement(methods.ping_kernel, async (id) => {
      const rtt = await apps.ping(id);
      log.debug('ping_kernel', { kernelId: id, rttMs: Math.round(rtt * 1000) });
      return null;
    }),
    implement(methods.start_service, (id, service, opts) => apps.start(id, service, opts)),
    implement(methods.shutdown_service, (id, service) => apps.shutdown(id, service)),
  ];
}
