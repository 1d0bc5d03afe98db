/**
 * The drain methods (`drain`, `undrain`; src/rpc/methods.ts) bound to the
 * node's drain (src/services/drain.ts). Both generations serve the same
 * declarations: the 2018 table and the modern one list them alike.
 */
import { implement, type Binding } from '../rpc/dispatcher.js';
import { methods } from '../rpc/methods.js';
import type { NodeDrain } from '../services/drain.js';

/** drainBindings are drain and undrain and what serves them. */
export function drainBindings(drain: NodeDrain): Binding[] {
  return [implement(methods.drain, (deadline) => drain.drain(deadline ?? null)), implement(methods.undrain, () => drain.undrain())];
}
