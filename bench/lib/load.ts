/**
 * The load generator of the RPC figure: keeps a fixed number of calls in
 * flight for a while and records every call's latency. The same code drives
 * both servers; it calls through AgentClient (src/rpc/client.ts).
 */
import { performance } from 'node:perf_hooks';

/** What one burst of load measured. */
export interface LoadResult {
  /** Completed calls per second over the burst, drain included. */
  rate: number;
  /** Latency of every call, in milliseconds. */
  latenciesMs: number[];
}

/**
 * Runs `call` with `inFlight` calls outstanding at all times until
 * `durationMs` has passed, then waits for the last ones. A failed call fails
 * the burst: a figure built on errors would measure nothing.
 */
export async function drive(call: () => Promise<unknown>, inFlight: number, durationMs: number): Promise<LoadResult> {
  const latenciesMs: number[] = [];
  const start = performance.now();
  const end = start + durationMs;
  const worker = async () => {
    while (performance.now() < end) {
      const t = performance.now();
      await call();
      latenciesMs.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const elapsedMs = performance.now() - start;
  return { rate: latenciesMs.length / (elapsedMs / 1000), latenciesMs };
}
