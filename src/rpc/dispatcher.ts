/**
 * The dispatcher turns a parsed request into a reply: it finds the method,
 * binds and checks its arguments against the declaration, calls the handler,
 * and has the one catch that turns every failure into a wire error. It knows
 * methods, not frames or sockets.
 */
import type { Logger } from '../log.js';
import {
  AgentError,
  AgentShuttingDownError,
  errorMessage,
  MethodNotFoundError,
  NotImplementedYetError,
  ParametersError,
  toWireError,
} from '../errors.js';
import type { DispatchRequest, Reply } from '../wire/router.js';
import type { MethodDef } from './methods.js';
import { bindArguments, type Param, type ParamValues } from './params.js';

/** Binding joins a method declaration to the function that serves it. */
export interface Binding {
  readonly def: MethodDef;
  readonly handler: (...args: never[]) => unknown;
}

/** Declares that `handler` serves `def`; the handler's argument types follow the declaration. */
export function implement<const P extends readonly Param<unknown>[], R>(
  def: MethodDef<P, R>,
  handler: (...args: ParamValues<P>) => Promise<R> | R,
): Binding {
  return { def, handler: handler as unknown as Binding['handler'] };
}

/** A binding for a method of the contract that this build does not serve yet. */
export function notImplemented(def: MethodDef): Binding {
  return {
    def,
    handler: () => {
      throw new NotImplementedYetError(def.name);
    },
  };
}

export class Dispatcher {
  private readonly table = new Map<string, Binding>();
  private accepting = true;

  constructor(
    bindings: readonly Binding[],
    private readonly log: Logger,
  ) {
    for (const b of bindings) {
      if (this.table.has(b.def.name)) throw new Error(`method ${b.def.name} is bound twice`);
      this.table.set(b.def.name, b);
    }
  }

  /** From now on, new calls are refused with a retryable "shutting down" error. */
  stopAccepting(): void {
    this.accepting = false;
  }

  /** The request handler the transport calls; it never throws. */
  readonly handle = async (request: DispatchRequest): Promise<Reply> => {
    const method = request.method;
    try {
      if (request.kind === 'malformed') throw new ParametersError(request.reason);
      if (!this.accepting) throw new AgentShuttingDownError();
      const binding = this.table.get(method);
      if (!binding) throw new MethodNotFoundError(method);
      const values = this.bind(binding.def, request.args, request.kwargs);
      const value = await binding.handler(...(values as never[]));
      return { ok: true, value: value === undefined ? null : value };
    } catch (err) {
      if (!(err instanceof AgentError)) {
        this.log.error('RPC handler failed unexpectedly', { method, error: errorMessage(err), stack: (err as Error)?.stack });
      } else {
        this.log.debug('RPC call failed', { method, error: err.message });
      }
      return { ok: false, error: toWireError(err, method) };
    }
  };

  private bind(def: MethodDef, args: unknown[], kwargs: Record<string, unknown>): unknown[] {
    if (def.unchecked) return [];
    try {
      return bindArguments(def.name, def.params, args, kwargs);
    } catch (err) {
      if (!def.legacy) throw err;
      try {
        return def.legacy.toCanonical(bindArguments(def.name, def.legacy.params, args, kwargs));
      } catch {
        throw err; // the canonical form's complaint is the one to show
      }
    }
  }
}
