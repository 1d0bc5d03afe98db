/**
 * The RPC figure's main load generator: bench/native/zmq-load.c, a C
 * program on libzmq with the request encoded once, so that the client costs
 * next to nothing beside the server it measures. One call runs one burst.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { nativeProgram } from './native.js';

const run = promisify(execFile);

/** What zmq-load prints (times in microseconds). */
export interface CLoadResult {
  inFlight: number;
  completed: number;
  bad: number;
  lost: number;
  elapsedS: number;
  rate: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  /** [lower µs, upper µs, count] of every bucket that is not empty. */
  histogram: Array<[number, number, number]>;
  /** Up to `samples` latencies taken evenly from all of them. */
  samplesUs: number[];
}

/** Parses and checks zmq-load's output line. */
export function parseCLoad(stdout: string): CLoadResult {
  let r: CLoadResult;
  try {
    r = JSON.parse(stdout) as CLoadResult;
  } catch {
    throw new Error(`zmq-load printed no JSON: ${stdout.slice(0, 200)}`);
  }
  for (const k of ['completed', 'bad', 'lost', 'rate', 'p50Us', 'p99Us'] as const) {
    if (typeof r[k] !== 'number' || !Number.isFinite(r[k])) throw new Error(`zmq-load output has no number ${k}`);
  }
  if (!Array.isArray(r.histogram) || !Array.isArray(r.samplesUs)) throw new Error('zmq-load output has no histogram or samples');
  return r;
}

/** One burst of `ping` with `inFlight` calls outstanding for `durationMs`; fails if any reply was bad or missing. */
export async function cLoad(endpoint: string, inFlight: number, durationMs: number, samples = 2000): Promise<CLoadResult> {
  const bin = await nativeProgram('zmq-load');
  let stdout: string;
  try {
    stdout = (await run(bin, [endpoint, String(inFlight), String(durationMs), String(samples)], { maxBuffer: 64 << 20 })).stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    if (e.stdout) {
      const r = parseCLoad(e.stdout);
      throw new Error(`zmq-load against ${endpoint}: ${r.bad} bad replies and ${r.lost} lost of ${r.completed + r.lost} calls`, {
        cause: err,
      });
    }
    throw new Error(`zmq-load against ${endpoint} failed: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
  return parseCLoad(stdout);
}
