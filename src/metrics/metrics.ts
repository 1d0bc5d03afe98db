/**
 * AgentMetrics exposes the agent's numbers in the Prometheus text format:
 * warm pool sizes per image and type and state (idle, creating, claimed),
 * claims, cold fallbacks, the creation latency of pooled containers, and the
 * kernels by state; and the agent's own RPC methods and event sinks
 * (src/metrics/rpc-metrics.ts). They are written to a file for node_exporter's textfile
 * collector (atomically: a temp file renamed over the old one) every few
 * seconds and, when a port is given, served at `GET /metrics`.
 */
import { promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import type { PoolSizes } from '../pool/pool.js';
import type { GpuReport } from '../accelerators/gpus.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { registerRpcMetrics, type RpcMetricsSources } from './rpc-metrics.js';
import type { Health } from './health.js';

/** Where the numbers come from, read at every collection. */
export interface MetricsSources extends RpcMetricsSources {
  poolSizes(): PoolSizes[];
  /** Claims so far per `<lang>/<type>`. */
  claimTotals(): ReadonlyMap<string, number>;
  /** Cold creations so far per lang (nothing in the pool fit). */
  coldTotals(): ReadonlyMap<string, number>;
  /** The warm pool's hygiene and sizing passes so far. */
  poolPasses(): number;
  kernelStates(): Record<string, number>;
  /** Each usable GPU; absent: no GPU gauges. */
  gpus?(): GpuReport[];
  /** Kernel images the image collector removed so far (src/images/gc.ts). */
  imagesCollected(): number;
  /** The schedulable slots in all and free now (README, Memory accounting); absent: no slot gauges. */
  slots?(): { cpu_total: number; cpu_free: number; mem_total_mib: number; mem_free_mib: number };
}

/** Options of {@link AgentMetrics}. */
export interface MetricsOptions {
  /** The text file to write; null: none. */
  file: string | null;
  /** The TCP port of the HTTP endpoint; null: none. */
  port: number | null;
  /** Address the HTTP endpoint binds (`*` for all). */
  host: string;
  intervalMs: number;
  log: Logger;
  /** Serves `/livez` and `/readyz` beside `/metrics` (src/metrics/health.ts); absent: only `/metrics`. */
  health?: Health;
}

export class AgentMetrics {
  readonly registry = new Registry();
  /** Observes the seconds a pooled container took to become ready. */
  readonly creationSeconds: Histogram;
  private timer: NodeJS.Timeout | null = null;
  private server: http.Server | null = null;
  private fileFailed = false;

  constructor(
    sources: MetricsSources,
    private readonly options: MetricsOptions,
  ) {
    const registers = [this.registry];
    new Gauge({
      name: 'compute_agent_pool_containers',
      help: 'Warm pool containers by image, resource type and state (idle, creating, claimed).',
      labelNames: ['image', 'type', 'state'],
      registers,
      collect() {
        this.reset();
        for (const r of sources.poolSizes()) {
          for (const state of ['idle', 'creating', 'claimed'] as const) this.set({ image: r.lang, type: r.type, state }, r[state]);
        }
      },
    });
    new Gauge({
      name: 'compute_agent_pool_frozen',
      help: 'Idle warm pool containers waiting paused (pool/freeze), by image and resource type.',
      labelNames: ['image', 'type'],
      registers,
      collect() {
        this.reset();
        for (const r of sources.poolSizes()) this.set({ image: r.lang, type: r.type }, r.frozen);
      },
    });
    new Counter({
      name: 'compute_agent_pool_claims_total',
      help: 'Kernels created by claiming a warm pool container.',
      labelNames: ['image', 'type'],
      registers,
      collect() {
        this.reset();
        for (const [key, n] of sources.claimTotals()) {
          const i = key.lastIndexOf('/');
          this.inc({ image: key.slice(0, i), type: key.slice(i + 1) }, n);
        }
      },
    });
    new Counter({
      name: 'compute_agent_pool_cold_fallbacks_total',
      help: 'Kernels created cold because nothing in the warm pool fit.',
      labelNames: ['image'],
      registers,
      collect() {
        this.reset();
        for (const [lang, n] of sources.coldTotals()) this.inc({ image: lang }, n);
      },
    });
    new Counter({
      name: 'compute_agent_pool_passes_total',
      help: 'Hygiene and sizing passes of the warm pool (one every few seconds while it runs).',
      registers,
      collect() {
        this.reset();
        this.inc(sources.poolPasses());
      },
    });
    this.creationSeconds = new Histogram({
      name: 'compute_agent_pool_creation_seconds',
      help: 'Seconds from create to a runner answering, per warm pool container.',
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers,
    });
    new Gauge({
      name: 'compute_agent_kernels',
      help: 'Kernels held by the agent, by state (creating, running, restarting, destroying).',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        for (const [state, n] of Object.entries(sources.kernelStates())) this.set({ state }, n);
      },
    });
    const slots = sources.slots;
    if (slots) {
      new Gauge({
        name: 'compute_agent_slots',
        help: 'Schedulable core places and memory (MiB): in all and free now (resource cpu or mem_mib, kind total or free).',
        labelNames: ['resource', 'kind'],
        registers,
        collect() {
          const s = slots();
          this.set({ resource: 'cpu', kind: 'total' }, s.cpu_total);
          this.set({ resource: 'cpu', kind: 'free' }, s.cpu_free);
          this.set({ resource: 'mem_mib', kind: 'total' }, s.mem_total_mib);
          this.set({ resource: 'mem_mib', kind: 'free' }, s.mem_free_mib);
        },
      });
    }
    new Counter({
      name: 'compute_agent_images_collected_total',
      help: 'Unused kernel images the image collector removed to free disk space (image_gc_high, agentctl images gc).',
      registers,
      collect() {
        this.reset();
        this.inc(sources.imagesCollected());
      },
    });
    this.gpuGauges(sources, registers);
    registerRpcMetrics(sources, this.registry);
  }

  /** The per-device GPU gauges: memory, utilisation, and whether a kernel holds it. */
  private gpuGauges(sources: MetricsSources, registers: Registry[]): void {
    const gpus = sources.gpus;
    if (!gpus) return;
    const gauge = (name: string, help: string, value: (g: GpuReport) => number | null) =>
      new Gauge({
        name,
        help,
        labelNames: ['index', 'uuid', 'name'],
        registers,
        collect() {
          this.reset();
          for (const g of gpus()) {
            const v = value(g);
            if (v !== null) this.set({ index: String(g.index), uuid: g.uuid, name: g.name }, v);
          }
        },
      });
    gauge('compute_agent_gpu_memory_total_bytes', 'Memory of each usable GPU.', (g) => g.mem_total_bytes);
    gauge('compute_agent_gpu_memory_used_bytes', 'Memory in use on each usable GPU, at the last detection.', (g) => g.mem_used_bytes);
    gauge(
      'compute_agent_gpu_utilization_ratio',
      'Busy share of each usable GPU (0-1), at the last detection; absent where the driver says N/A.',
      (g) => (g.util_pct === null ? null : g.util_pct / 100),
    );
    gauge('compute_agent_gpu_allocated', '1 when a kernel (or an idle pooled container) holds the GPU, else 0.', (g) =>
      g.kernel_id ? 1 : 0,
    );
  }

  /** Starts writing the file and serving HTTP; a port that cannot be bound fails the start. */
  async start(): Promise<void> {
    if (this.options.port !== null) {
      const server = http.createServer((req, res) => {
        const route = (req.url ?? '').split('?')[0];
        const health = this.options.health;
        if (health && (route === '/livez' || route === '/readyz')) {
          health.serve(route, req, res).catch((err: unknown) => {
            if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
            res.end(`${errorMessage(err)}\n`);
          });
          return;
        }
        if (req.method !== 'GET' || route !== '/metrics') {
          res
            .writeHead(404, { 'content-type': 'text/plain' })
            .end(`only GET /metrics${health ? ', /livez and /readyz are' : ' is'} served here\n`);
          return;
        }
        this.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
          (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${errorMessage(err)}\n`),
        );
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.options.port!, this.options.host === '*' ? undefined : this.options.host, () => resolve());
      });
      this.server = server;
      this.options.log.info('serving metrics over HTTP', { port: this.options.port, path: '/metrics' });
    }
    if (this.options.file !== null) {
      const loop = () => {
        void this.writeFile().finally(() => {
          if (this.timer !== null) this.timer = setTimeout(loop, this.options.intervalMs);
        });
      };
      this.timer = setTimeout(loop, 0);
    }
  }

  /** Writes the metrics file now (temp file + rename, so readers never see half of it). */
  async writeFile(): Promise<void> {
    const file = this.options.file;
    if (file === null) return;
    try {
      await fs.mkdir(path.dirname(file), { recursive: true });
      await writeFileAtomic(file, await this.registry.metrics());
      if (this.fileFailed) this.options.log.info('writing the metrics file works again', { file });
      this.fileFailed = false;
    } catch (err) {
      if (!this.fileFailed)
        this.options.log.warn('cannot write the metrics file; fix its directory or point --metrics elsewhere', {
          file,
          error: errorMessage(err),
        });
      this.fileFailed = true;
    }
  }

  /** Stops the file writer and the HTTP endpoint. */
  async close(): Promise<void> {
    this.options.health?.close();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
