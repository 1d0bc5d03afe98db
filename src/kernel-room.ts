/**
 * The kernel room of the composition root: the parts that hold kernels and
 * what they need — the GPU books, the image room, the warm pool, the kernel
 * service (re-adopting what an earlier run left running) and the metrics
 * over them — built in order by {@link KernelRoom.build}, each kept as soon
 * as it exists so that a failed start releases exactly what it took
 * ({@link KernelRoom.close}). The agent (src/agent.ts) wires RPC, events
 * and etcd around it.
 */
import { findRunnerEnv, type RunnerEnv } from './containers/runner-env.js';
import type { Logger } from './log.js';
import { ConfigError, errorMessage } from './errors.js';
import type { AgentOptions } from './config/options.js';
import { VFOLDER_ROOT_KEY } from './config/etcd-keys.js';
import type { EtcdStore } from './adapters/etcd.js';
import { detectResources } from './node/resources.js';
import type { LiveSettings } from './services/live-settings.js';
import { KernelService } from './kernels/service.js';
import type { KernelServiceDeps } from './kernels/record.js';
import { CgroupStats } from './kernels/stats.js';
import { DEFAULT_FILE_LIMITS } from './kernels/files.js';
import { slotFigures } from './node/memory.js';
import { containerSecurity } from './config/security.js';
import { WarmPool } from './pool/pool.js';
import { AgentMetrics } from './metrics/metrics.js';
import type { RpcMetricsSources } from './metrics/rpc-metrics.js';
import { GpuService, readNodeCpus } from './accelerators/gpus.js';
import { NvidiaCuda } from './accelerators/nvidia.js';
import type { Accelerator } from './accelerators/types.js';
import { DockerImages } from './adapters/docker-images.js';
import { ImageService } from './images/service.js';
import type { RangedDocker } from './ports/ranged-docker.js';
import type { AgentEventName } from './events/catalogue.js';
import type { ScratchHomes } from './scratch/homes.js';
import { statsTarget } from './kernels/record.js';
import { StatsWriter } from './stats/stats-writer.js';
import type { Figures } from './stats/forms.js';
import { LegacyRedisLink } from './services/redis-link.js';
import { msgpackCodec } from './wire/codec.js';
import type { NodeMonitor } from './node/stats.js';
import type { ModernSide } from './modern-side.js';
import { DockerNetworks } from './adapters/docker-networks.js';
import { KernelNetwork } from './containers/kernel-network.js';
import { SessionOverlays } from './containers/session-overlay.js';
import { SessionNetworks } from './containers/session-network.js';
import { NodeDrain, type DrainState } from './services/drain.js';
import { readinessProbes } from './services/readiness.js';
import { Health } from './metrics/health.js';

/** What the kernel room is built from. */
export interface KernelRoomContext {
  options: AgentOptions;
  log: Logger;
  etcd: EtcdStore;
  docker: RangedDocker;
  settings: LiveSettings;
  /** The address kernels' ports are published for (the agent's, or --kernel-host-override). */
  kernelHost: string;
  /** A test's accelerator in place of the host's driver. */
  accelerator?: Accelerator;
  /** Emits a 2018 event (the image room's pull events). */
  publish(name: AgentEventName, args: unknown[]): void;
  /** Emits an event to every sink (2018 PUSH and the modern stream). */
  emitEvent(name: AgentEventName, args: unknown[]): void;
  /** This agent's share of the cluster's pending demand (src/services/demand-share.ts). */
  clusterShare(): Record<string, Record<string, number>>;
  /** The kernels' homes as scratch_type makes them (src/scratch/homes.ts). */
  scratch: ScratchHomes;
  /** Throws when the start was aborted. */
  checkpoint(): void;
  /** The modern side: which kernels a modern manager made, and where its Redis is (the modern stats go there). */
  modern: ModernSide;
  /** The node's figures (the modern node stats). */
  node: NodeMonitor;
  /** The RPC tallies and event sinks the metrics read (built after the room: read at collection). */
  rpcSources: RpcMetricsSources;
  /** Says a drain (or its end) in the registration and heartbeats (src/services/drain.ts). */
  announceDrain(state: DrainState | null): Promise<void>;
}

/** The stats writer over the kernel service's kernels (src/stats/), its Redis targets following etcd's keys. */
function buildStats(c: KernelRoomContext, kernels: () => KernelService | null, cg: CgroupStats): StatsWriter {
  const stats = new StatsWriter({
    agentId: c.options.agentId,
    log: c.log.child({ component: 'stats' }),
    codec: msgpackCodec,
    sources: () =>
      (kernels()?.list() ?? [])
        .filter((rec) => rec.state === 'running' && rec.containerId !== '')
        .map((rec) => ({
          id: rec.id,
          generation: c.modern.sessionOf(rec.id) === null ? ('legacy' as const) : ('modern' as const),
          memLimitBytes: rec.spec.memMiB * 1024 * 1024,
          read: () => cg.sample(statsTarget(rec)),
        })),
    node: async () => {
      const n = await c.node.read();
      const cores = detectResources().cpuSlots;
      return {
        cpuPct: n.cpu_pct,
        cores,
        memUsed: n.mem_total_bytes - n.mem_available_bytes,
        memTotal: n.mem_total_bytes,
        diskUsed: n.disk_total_bytes - n.disk_free_bytes,
        diskTotal: n.disk_total_bytes,
      };
    },
    intervalSec: () => c.settings.value.statsIntervalSec,
    readTimeoutSec: () => c.settings.value.statsReadTimeoutSec,
    expirySec: () => c.settings.value.statsExpirySec,
  });
  c.modern.onRedisTarget = (t) => stats.modern.setTarget(t);
  return stats;
}

/** The kernel service's live settings, read from the agent's settings each time. */
function kernelSettings(
  live: LiveSettings,
  options: AgentOptions,
  vfolderRoot: string,
  runner: { env: RunnerEnv | null; problem: string | null },
): KernelServiceDeps['settings'] {
  return () => {
    const s = live.value;
    return {
      imagePrefix: s.imagePrefix,
      imageAllowList: s.imageAllowList,
      vfolderRoot,
      kernelUid: s.kernelUid,
      idleTimeoutSec: options.idleTimeoutSec,
      execTimeoutSec: s.execTimeoutSec,
      runnerReadyTimeoutSec: s.runnerReadyTimeoutSec,
      fileLimits: { ...DEFAULT_FILE_LIMITS, maxUploadBytes: s.maxUploadBytes, maxDownloadBytes: s.maxDownloadBytes },
      security: containerSecurity(s),
      publishAddr: s.kernelPublishAddr,
      workspaceTemplate: s.workspaceTemplate,
      workspaceTemplateMaxBytes: s.workspaceTemplateMaxBytes,
      bootstrapTimeoutSec: s.bootstrapTimeoutSec,
      destroyTimeoutSec: s.destroyTimeoutSec,
      scratchReserveMiB: s.scratchReserveMiB,
      scratchSizeMiB: s.scratchSizeMiB,
      syncGraceSec: s.syncGraceSec,
      selfSyncIntervalSec: s.selfSyncIntervalSec,
      memReserveMiB: s.memReserveMiB,
      memOvercommit: s.memOvercommit,
      kernelShmMiB: s.kernelShmMiB,
      runnerEnv: runner.env,
      runnerEnvProblem: runner.problem,
    };
  };
}

/** The parts that hold kernels; null until built (or when a start failed before them). */
export class KernelRoom {
  network: KernelNetwork | null = null;
  /** The session networks of multi-kernel sessions (docs/sessions.rst). */
  sessionNetworks: SessionNetworks | null = null;
  /** The overlay networks of multi-node sessions, which the manager makes (docs/sessions.rst). */
  sessionOverlays: SessionOverlays | null = null;
  gpus: GpuService | null = null;
  images: ImageService | null = null;
  pool: WarmPool | null = null;
  kernels: KernelService | null = null;
  metrics: AgentMetrics | null = null;
  /** The node's drain (src/services/drain.ts). */
  drain: NodeDrain | null = null;
  /** The kernels' stats in the managers' Redis, and the link that follows `nodes/redis`. */
  stats: StatsWriter | null = null;
  private legacyRedis: LegacyRedisLink | null = null;

  /** Builds and starts the parts in order; the kernels left running are re-adopted, the metrics served. */
  async build(
    c: KernelRoomContext,
  ): Promise<{ gpus: GpuService; images: ImageService; pool: WarmPool; kernels: KernelService; metrics: AgentMetrics; drain: NodeDrain }> {
    const { options, settings: live } = c;
    const settings = live.value;
    const vfolderRoot = (await c.etcd.get(VFOLDER_ROOT_KEY)) ?? '/mnt';
    const cores = Array.from({ length: detectResources().cpuSlots }, (_, i) => i);
    const runner = settings.runnerEnvRoot
      ? await findRunnerEnv(settings.runnerEnvRoot)
      : { env: null, problem: 'runner_env_root is empty' };
    if (runner.env) c.log.info('runner environment for images without a runner', { dir: runner.env.dir, entries: runner.env.entries });
    else c.log.warn('no runner environment: kernels of images without a runner are refused', { problem: runner.problem });
    const forKernels = kernelSettings(live, options, vfolderRoot, runner);
    // Before any container is made or re-adopted: kernels join it, and its firewall chains keep them apart.
    const networks = new DockerNetworks(c.docker.docker);
    const network = new KernelNetwork({
      agentId: options.agentId,
      networks,
      log: c.log.child({ component: 'network' }),
      isolation: settings.kernelIsolation,
      egress: settings.kernelEgress,
    });
    this.network = network;
    await network.open();
    this.sessionNetworks = new SessionNetworks({
      agentId: options.agentId,
      networks,
      log: c.log.child({ component: 'network' }),
    });
    this.sessionOverlays = new SessionOverlays({ agentId: options.agentId, networks });
    c.docker.networkReady = (name) => (name === network.name ? network.ready() : Promise.resolve());
    c.checkpoint();
    const accelerator = c.accelerator ?? new NvidiaCuda({ allow: () => live.value.gpuAllow, docker: () => c.docker.runtimes() });
    const gpus = new GpuService(accelerator, c.log.child({ component: 'gpus' }), await readNodeCpus());
    this.gpus = gpus;
    await gpus.start(); // a hung or failing nvidia-smi is a `none` state, never an error
    c.checkpoint();
    const images: ImageService = new ImageService({
      images: new DockerImages(c.docker.docker),
      log: c.log.child({ component: 'images' }),
      emit: (name, args) => c.publish(name, args),
      settings: () => live.value,
      etcdGet: (key) => c.etcd.get(key),
      kernels: () => this.kernels?.list() ?? [],
      pool: () => this.pool,
      scratchRoot: options.scratchRoot,
      agentId: options.agentId,
    });
    this.images = images;
    images.start();
    const pool = new WarmPool({
      ensureImage: (image: string) => images.ensure(image),
      docker: c.docker,
      log: c.log.child({ component: 'pool' }),
      agentId: options.agentId,
      scratchRoot: options.scratchRoot,
      kernelHost: c.kernelHost,
      allCores: cores,
      coreLoad: () => this.kernels?.cores.loads() ?? new Map(),
      settings: () => live.poolValue,
      clusterShare: () => c.clusterShare(),
      kernelSettings: forKernels,
      gpus,
      memory: () => this.kernels?.memory ?? null, // idle pooled containers' limits are charged with the kernels'
    });
    this.pool = pool;
    const cg = new CgroupStats();
    const stats = buildStats(c, () => this.kernels, cg);
    this.stats = stats;
    const kernels = new KernelService({
      scratch: c.scratch,
      pool,
      images,
      docker: c.docker,
      stats: cg,
      log: c.log.child({ component: 'kernels' }),
      emit: (name, args) => {
        if (name !== 'kernel_terminated') return c.emitEvent(name, args);
        // The 2018 manager reads the kernel's hash when kernel_terminated arrives: the last stats go first (bounded).
        const id = String(args[0]);
        const first = stats.final(id, c.modern.sessionOf(id) === null ? ((args[2] ?? null) as Partial<Figures> | null) : null); // a modern kernel has no 2018 hash
        if (first) void first.then(() => c.emitEvent(name, args));
        else c.emitEvent(name, args);
      },
      agentId: options.agentId,
      scratchRoot: options.scratchRoot,
      kernelHost: c.kernelHost,
      cores,
      createConcurrency: settings.createConcurrency,
      cpuOvercommit: settings.cpuOvercommit,
      downloadConcurrency: settings.downloadConcurrency,
      settings: forKernels,
      gpus,
    });
    this.kernels = kernels;
    await c.docker.adoptAgentPorts(options.agentId); // the ports of containers left running, before they are adopted
    await kernels.adopt().catch((err: unknown) => {
      throw new ConfigError(`cannot re-adopt the kernels of this node: ${errorMessage(err)}`);
    });
    await this.sessionNetworks.sweep(); // after adoption: a network with a re-adopted kernel on it stays
    await pool.sweepHomes();
    images.gc.start(); // now that the kernels left running are known again: their images are in use
    this.legacyRedis = new LegacyRedisLink({
      etcd: c.etcd,
      log: c.log.child({ component: 'redis-link' }),
      setTarget: (t) => stats.legacy.setTarget(t),
    });
    await this.legacyRedis.start();
    stats.start();
    // A drain kept in etcd is in force before the pool fills and before RPC takes creates.
    const drain = new NodeDrain({
      etcd: c.etcd,
      agentId: options.agentId,
      log: c.log.child({ component: 'drain' }),
      kernels,
      pool,
      announce: c.announceDrain,
    });
    this.drain = drain;
    await drain.start();
    c.checkpoint();
    const probes = readinessProbes({ agentId: options.agentId, etcd: c.etcd, docker: c.docker, network, redis: c.modern.sink, drain });
    const metrics = new AgentMetrics(
      {
        poolSizes: () => pool.sizes(),
        claimTotals: () => pool.claimTotals,
        coldTotals: () => pool.coldTotals,
        poolPasses: () => pool.passes,
        kernelStates: () => kernels.stateCounts(),
        slots: () => slotFigures(kernels),
        gpus: () => gpus.report(),
        imagesCollected: () => images.gc.removedTotal,
        ...c.rpcSources,
      },
      {
        file: options.metricsPath,
        port: options.metricsPort,
        host: options.bindHost,
        intervalMs: 2000,
        log: c.log.child({ component: 'metrics' }),
        health: options.metricsPort === null ? undefined : new Health(probes),
      },
    );
    this.metrics = metrics;
    pool.onCreated = (sec) => this.metrics?.creationSeconds.observe(sec);
    await metrics.start().catch((err: unknown) => {
      throw new ConfigError(
        `cannot serve metrics on port ${options.metricsPort} (${errorMessage(err)}): choose another with --metrics-port`,
      );
    });
    return { gpus, images, pool, kernels, metrics, drain };
  }

  /** Stops what was built, in reverse order; never throws. */
  async close(): Promise<void> {
    await this.drain?.stop();
    await this.legacyRedis?.stop();
    await this.stats?.close();
    this.kernels?.close();
    this.gpus?.stop();
    await this.pool?.close();
    await this.images?.close();
    await this.metrics?.close();
    await this.network?.close();
  }
}
