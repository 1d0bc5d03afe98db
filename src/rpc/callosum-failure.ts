/**
 * How the agent's wire errors read to modern (Callosum) managers: the
 * exception's short name and its repr; an unknown method is a `KeyError`
 * naming it, as the stock Callosum server would raise (but answered, not
 * swallowed), with the CLI command that lists the methods that are served.
 * The router (src/wire/) is given this and only frames what it returns.
 */
import { MethodNotFoundError, pyRepr, shortWireName, type WireError } from '../errors.js';
import type { CallosumFailure } from '../wire/callosum.js';

/** A wire error as a Callosum failure. */
export function callosumFailure(error: WireError): CallosumFailure {
  if (error.type === MethodNotFoundError.wireName) {
    const message = `the method ${String(error.args[0])} is not served by this agent (agent methods --modern lists those that are)`;
    return { name: 'KeyError', repr: `KeyError(${pyRepr(message)})`, traceback: '' };
  }
  return { name: shortWireName(error.type), repr: error.repr, traceback: '' };
}
