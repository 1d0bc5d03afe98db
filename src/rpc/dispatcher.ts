/**
 * The dispatcher turns a parsed request into a reply: it finds the method,
 * binds and checks its arguments against the declaration, calls the handler,
 * and has the one catch that turns every failure into a wire error. It knows
 * methods, not frames or sockets. Every call is counted in its method's
 * tally (src/rpc/call-tally.ts), which the metrics read.
 */
import type { Logger } from '../log.js';
import {
  AgentError,
  AgentShuttingDownError,
  errorMessage,
  MethodNotFoundError,
  NotImplementedYetError,
  ArgumentsError,
  toWireError,
} from '../errors.js';
import type { DispatchRequest, Reply } from '../wire/router.js';
import type { MethodDef } from './methods.js';
import { bindArguments, type Param, type ParamValues } from './params.js';
import { CallTally, type MethodTally } from './call-tally.js';

/** Binding joins a method declaration to the function that serves it. */
export interface Binding {
  readonly def: MethodDef;
  readonly handler: (...args: never[]) => unknown;
}

/**
 * Guarded is a handler's value with what to do when it cannot be delivered
 * because the caller is gone (e.g. destroy the kernel a create made).
 */
export class Guarded<R> {
  constructor(
    readonly value: R,
    readonly undelivered: () => void,
  ) {}
}

/** Declares that `handler` serves `def`; the handler's argument types follow the declaration. */
export function implement<const P extends readonly Param<unknown>[], R>(
  def: MethodDef<P, R>,
  handler: (...args: ParamValues<P>) => Promise<R | Guarded<R>> | R | Guarded<R>,
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

/** A handler's value as a reply (undefined goes out as nil). */
const answer = (value: unknown): Reply =>
  value instanceof Guarded
    ? { ok: true, value: value.value as unknown, undelivered: value.undelivered }
    : { ok: true, value: value === undefined ? null : value };

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function';
}

/** A method of the table: its binding and its tally, found with one look-up per call. */
interface Entry {
  readonly binding: Binding;
  readonly tally: MethodTally;
}

export class Dispatcher {
  private readonly table = new Map<string, Entry>();
  private accepting = true;
  /** Each method's calls, failures and latencies (read by the metrics). */
  readonly tally: CallTally;

  /** `generation` labels the calls in the metrics: `2018` (aiozmq.rpc) or `modern` (Callosum). */
  constructor(
    bindings: readonly Binding[],
    private readonly log: Logger,
    generation = '2018',
  ) {
    const names = bindings.map((b) => b.def.name);
    this.tally = new CallTally(generation, new Set(names));
    for (const b of bindings) {
      if (this.table.has(b.def.name)) throw new Error(`method ${b.def.name} is bound twice`);
      this.table.set(b.def.name, { binding: b, tally: this.tally.of(b.def.name) });
    }
  }

  /** From now on, new calls are refused with a retryable "shutting down" error. */
  stopAccepting(): void {
    this.accepting = false;
  }

  /**
   * The request handler the transport calls; it never throws. A handler that
   * answers at once (ping, the readers of the agent's state) gets its reply
   * without a promise, so the hot calls skip two microtask turns each.
   */
  readonly handle = (request: DispatchRequest): Reply | Promise<Reply> => {
    const start = performance.now();
    const method = request.method;
    const entry = this.table.get(method);
    const tally = entry?.tally ?? this.tally.unknown; // never the raw name: a manager may send any
    try {
      if (request.kind === 'malformed') throw new ArgumentsError(request.reason);
      if (!this.accepting) throw new AgentShuttingDownError();
      if (!entry) throw new MethodNotFoundError(method);
      const binding = entry.binding;
      const values = this.bind(binding.def, request.args, request.kwargs);
      const value = binding.handler(...(values as never[]));
      if (isThenable(value))
        return Promise.resolve(value).then(
          (v) => {
            tally.record(start, null);
            return answer(v);
          },
          (err: unknown) => this.failure(err, method, tally, start),
        );
      tally.record(start, null);
      return answer(value);
    } catch (err) {
      return this.failure(err, method, tally, start);
    }
  };

  /** The one place a failure becomes a wire error (and an unexpected one is logged), counted under its wire name. */
  private failure(err: unknown, method: string, tally: MethodTally, start: number): Reply {
    if (!(err instanceof AgentError)) {
      this.log.error('RPC handler failed unexpectedly', { method, error: errorMessage(err), stack: (err as Error)?.stack });
    } else {
      this.log.debug('RPC call failed', { method, error: err.message });
    }
    const error = toWireError(err, method);
    tally.record(start, error.type);
    return { ok: false, error };
  }

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
