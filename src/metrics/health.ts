/**
 * Health answers `GET /livez` and `GET /readyz` on the metrics port
 * (docs/observability.rst, "Health endpoints"), for supervisors and load
 * balancers that speak HTTP rather than RPC. Liveness is the process and its
 * event loop: the loop's longest delay over the last few seconds
 * (perf_hooks' monitorEventLoopDelay) must stay under a second, or the agent
 * answers too late to anyone. Readiness is each dependency the agent needs to
 * take kernels (etcd, Docker, Redis where set, the kernel isolation rules, not
 * draining), each probed with its own time bound. Both answer 200 or 503 with
 * a JSON body naming what failed and how to fix it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { errorMessage } from '../errors.js';

/** The longest event-loop delay a live agent shows (the bound: answers within 1 s). */
export const LIVENESS_LAG_BOUND_MS = 1000;
/** How long one readiness probe may take before it counts as failed. */
export const PROBE_TIMEOUT_MS = 2000;
/** The event-loop delays are kept over two windows of this length (the current and the last). */
const LAG_WINDOW_MS = 5000;

/** What a readiness probe found: fine, or what is wrong and the fix. */
export type ProbeResult = { ok: true; detail?: string } | { ok: false; error: string; fix: string };

/** One dependency of readiness. */
export interface ReadinessProbe {
  /** Its name in the body (`etcd`, `docker`, `redis`, `firewall`, `drain`). */
  name: string;
  /** Resolves with what it found; a throw or no answer in {@link PROBE_TIMEOUT_MS} is a failure with `fix`. */
  probe(): Promise<ProbeResult>;
  /** The fix said when the probe throws or times out. */
  fix: string;
}

export class Health {
  private readonly lag: IntervalHistogram = monitorEventLoopDelay({ resolution: 20 });
  /** The longest delay of the last full window, ms. */
  private lastWindowMaxMs = 0;
  private readonly rotation: NodeJS.Timeout;

  constructor(private readonly probes: readonly ReadinessProbe[]) {
    this.lag.enable();
    this.rotation = setInterval(() => {
      this.lastWindowMaxMs = this.lag.max / 1e6;
      this.lag.reset();
    }, LAG_WINDOW_MS);
    this.rotation.unref();
  }

  /** The longest event-loop delay over the last 5 to 10 s, ms. */
  lagMs(): number {
    return Math.max(this.lastWindowMaxMs, this.lag.count > 0 ? this.lag.max / 1e6 : 0);
  }

  /** /livez: 200 while the event loop keeps within its bound, else 503 with the delay seen. */
  livez(): { code: number; body: Record<string, unknown> } {
    const lag = Math.round(this.lagMs());
    if (lag <= LIVENESS_LAG_BOUND_MS) return { code: 200, body: { status: 'ok', event_loop_lag_ms: lag, bound_ms: LIVENESS_LAG_BOUND_MS } };
    return {
      code: 503,
      body: {
        status: 'fail',
        event_loop_lag_ms: lag,
        bound_ms: LIVENESS_LAG_BOUND_MS,
        failed: ['event_loop'],
        error: `the event loop stalled for ${lag} ms (bound ${LIVENESS_LAG_BOUND_MS} ms): the agent answers calls late`,
        fix: 'look at the agent log around now (a long synchronous step, or a starved CPU); restart the agent if it keeps failing',
      },
    };
  }

  /** /readyz: every probe at once, each bounded; 200 when all pass, else 503 naming those that failed. */
  async readyz(): Promise<{ code: number; body: Record<string, unknown> }> {
    const results = await Promise.all(this.probes.map((p) => this.run(p)));
    const checks = Object.fromEntries(this.probes.map((p, i) => [p.name, results[i]!]));
    const failed = this.probes.filter((_, i) => !results[i]!.ok).map((p) => p.name);
    return { code: failed.length ? 503 : 200, body: { status: failed.length ? 'fail' : 'ok', failed, checks } };
  }

  /** Serves one request for /livez or /readyz (GET or HEAD; anything else is 405). */
  async serve(route: '/livez' | '/readyz', req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }).end(`${route} answers GET and HEAD only\n`);
      return;
    }
    const { code, body } = route === '/livez' ? this.livez() : await this.readyz();
    const text = JSON.stringify(body) + '\n';
    res.writeHead(code, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : text);
  }

  /** Stops measuring the event loop. */
  close(): void {
    clearInterval(this.rotation);
    this.lag.disable();
  }

  private async run(p: ReadinessProbe): Promise<ProbeResult> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<ProbeResult>((resolve) => {
      timer = setTimeout(
        () => resolve({ ok: false, error: `${p.name} did not answer within ${PROBE_TIMEOUT_MS} ms`, fix: p.fix }),
        PROBE_TIMEOUT_MS,
      );
    });
    try {
      return await Promise.race([
        p.probe().catch((err: unknown): ProbeResult => ({ ok: false, error: errorMessage(err), fix: p.fix })),
        late,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}
