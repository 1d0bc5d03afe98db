/**
 * Agent is the composition root: it builds every part of the daemon from the
 * validated options, starts them in order, and drains them in order. Several
 * agents can live side by side in one process (tests do that); signals are
 * owned by the CLI, not here.
 *
 * Start: wait for etcd -> settings -> register `starting` -> re-adopt the
 * kernels left running -> bind RPC (src/rpc-side.ts) -> follow the manager's event sink ->
 * heartbeats, idle reaping, container deaths -> `running`.
 * Stop: refuse new calls -> finish in-flight calls -> `instance_terminated`
 * -> deregister -> close sockets -> close etcd.
 */
import type { Logger } from './log.js';
import { ConfigError, errorMessage } from './errors.js';
import type { AgentOptions } from './config/options.js';
import type { Settings } from './config/setting-table.js';
import { EtcdStore } from './adapters/etcd.js';
import { detectHostAddress, detectResources } from './node/resources.js';
import { NodeMonitor } from './node/stats.js';
import { msgpackCodec } from './wire/codec.js';
import type { RpcRouter, RouterStats } from './wire/router.js';
import type { Dispatcher } from './rpc/dispatcher.js';
import { EventPublisher, type PublisherStats } from './events/publisher.js';
import { Heartbeat } from './services/heartbeat.js';
import { LiveSettings } from './services/live-settings.js';
import { ManagerLink } from './services/manager-link.js';
import { Registration } from './services/registration.js';
import { shareDemand, type DemandShare } from './services/demand-share.js';
import { KernelService } from './kernels/service.js';
import { loadKeyPair, type KeyPair } from './config/keys.js';
import { WarmPool } from './pool/pool.js';
import { AgentMetrics } from './metrics/metrics.js';
import type { GpuService } from './accelerators/gpus.js';
import type { Accelerator } from './accelerators/types.js';
import { ImageService } from './images/service.js';
import { nodeStartup } from './node/startup.js';
import { Prepull } from './images/prepull.js';
import { ModernSide } from './modern-side.js';
import { KernelRoom } from './kernel-room.js';
import { buildRpc, startRpc } from './rpc-side.js';
import { RangedDocker } from './ports/ranged-docker.js';
import type { PortRangeStats } from './ports/range.js';
import { portRangeBounds } from './config/setting-parsers.js';
import { createRequire } from 'node:module';
import { emptySinkStats, type SinkStats } from './events/sink.js';
import type { StatsWriter } from './stats/stats-writer.js';
import type { AgentEventName } from './events/catalogue.js';
import { openScratchHomes } from './scratch/homes.js';

/** The agent's version, from package.json (the modern health and heartbeat report it). */
export const AGENT_VERSION: string = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

/** The states of an agent; every transition is logged. */
export type AgentState = 'initialized' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

/** How long a drain waits for in-flight calls before closing anyway. */
const DRAIN_TIMEOUT_MS = 10_000;

export class Agent {
  private state: AgentState = 'initialized';
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private readonly etcd: EtcdStore;
  /** Docker with host ports from container_port_range (src/ports/). */
  private readonly docker = new RangedDocker(() => ({
    ...portRangeBounds(this.settings.value.containerPortRange),
    cooldownSec: this.settings.value.portReuseCooldownSec,
  }));
  private readonly registration: Registration;
  private readonly node: NodeMonitor;
  private publisher: EventPublisher | null = null;
  private readonly hostIp: string;
  private settings: LiveSettings;
  private dispatcher: Dispatcher | null = null;
  private modern: ModernSide | null = null;
  /** Called once the agent has stopped by itself (shutdown_agent), so that the process can exit; the CLI sets it. */
  onSelfStop: (() => void) | null = null;
  private router: RpcRouter | null = null;
  private heartbeat: Heartbeat | null = null;
  private managerLink: ManagerLink | null = null;
  /** The GPU books, images, warm pool, kernels and metrics (src/kernel-room.ts). */
  private readonly room = new KernelRoom();
  private demand: DemandShare | null = null;
  private prepull: Prepull | null = null;
  private starting: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  private registered = false;
  private keyPair: KeyPair | null = null;

  constructor(
    readonly options: AgentOptions,
    log: Logger,
    /** Parts a test puts in place of the host's: the accelerator (a fixture tree instead of the real driver). */
    private readonly parts: { accelerator?: Accelerator } = {},
  ) {
    this.log = log.child({ component: 'agent', agentId: options.agentId });
    this.etcd = new EtcdStore(options.etcdAddr, options.namespace, log.child({ component: 'etcd' }));
    this.registration = new Registration(this.etcd, options.agentId, log.child({ component: 'registration' }));
    this.node = new NodeMonitor(options.scratchRoot);
    this.hostIp = options.agentHostOverride ?? detectHostAddress();
    this.settings = new LiveSettings(this.etcd, options.agentId, log.child({ component: 'settings' }), (s) => this.applySettings(s));
  }

  /** The current state. */
  get currentState(): AgentState {
    return this.state;
  }

  /** The agent's CURVE public key (Z85) when RPC authentication is on, else null. */
  get publicKey(): string | null {
    return this.keyPair?.publicKey ?? null;
  }

  /** The `tcp://host:port` the manager reaches this agent at. */
  get address(): string {
    return `tcp://${this.hostIp}:${this.options.agentPort}`;
  }

  /** The kernel service once started (for tests and tools); null before. */
  get kernelService(): KernelService | null {
    return this.room.kernels;
  }

  /** The warm pool once started (for tests and tools); null before. */
  get warmPool(): WarmPool | null {
    return this.room.pool;
  }

  /** The image room once started (for tests and tools); null before. */
  get imageService(): ImageService | null {
    return this.room.images;
  }

  /** The metrics once started (for tests and tools); null before. */
  get agentMetrics(): AgentMetrics | null {
    return this.room.metrics;
  }

  /** The GPU service once started (for tests and tools); null before. */
  get gpuService(): GpuService | null {
    return this.room.gpus;
  }
  /** The stats writer of the managers' Redis (src/stats/); null before start. */
  get statsWriter(): StatsWriter | null {
    return this.room.stats;
  }

  /**
   * Resolves once `n` more heartbeats than now have gone out (at once when
   * the agent is not beating, and at its stop): tests and tools wait on the
   * beat instead of for a time that should hold some beats.
   */
  afterHeartbeats(n: number): Promise<void> {
    return this.heartbeat?.afterBeats(n) ?? Promise.resolve();
  }

  /** Counters of the RPC transport and the event publisher, for logs and tests. */
  stats(): { rpc: RouterStats | null; rpcCurve: RouterStats | null; events: PublisherStats; modernEvents: SinkStats } {
    return {
      rpc: this.router?.snapshot() ?? null,
      events: this.publisher?.snapshot() ?? emptySinkStats(),
      ...(this.modern?.stats() ?? { rpcCurve: null, modernEvents: emptySinkStats() }),
    };
  }

  /** Emits an event of the agent to every sink: the 2018 PUSH one as it is, the Redis stream in its modern form. */
  private emitEvent(name: AgentEventName, args: unknown[]): boolean {
    this.modern?.fromAgent(name, args);
    return this.publisher?.emit(name, args) ?? false;
  }

  /** Starts the agent; on failure everything taken so far is released and the error is thrown. */
  start(): Promise<void> {
    if (this.state !== 'initialized') return Promise.reject(new Error(`cannot start an agent that is ${this.state}`));
    this.starting = this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    this.transition('initialized', 'starting');
    const checkpoint = () => this.abort.signal.throwIfAborted();
    try {
      await this.etcd.waitReady(this.abort.signal);
      const settings = await this.settings.load();
      if (settings.rpcKeypairFile) {
        this.keyPair = await loadKeyPair(settings.rpcKeypairFile);
        if (settings.rpcAllowedKeys.length === 0) {
          throw new ConfigError(
            "rpc_keypair_file is set but rpc_allowed_keys is empty, so no manager could call: list the managers' public keys",
          );
        }
      }
      await nodeStartup(settings, this.log.child({ component: 'startup' }), this.abort.signal);
      // scratch_type: a host that cannot give it stops the start here (ConfigError naming what is missing).
      const scratch = await openScratchHomes({
        root: this.options.scratchRoot,
        agentId: this.options.agentId,
        type: settings.scratchType,
        log: this.log.child({ component: 'scratch' }),
        settings: () => this.settings.value,
      });
      const modern = new ModernSide({
        agentId: this.options.agentId,
        log: this.log,
        etcd: this.etcd,
        version: AGENT_VERSION,
        hostIp: this.hostIp,
        bindHost: this.options.bindHost,
        address: this.address,
        settings: () => this.settings.value,
      });
      this.modern = modern;
      await modern.loadKeys();
      checkpoint();
      const publisher = this.makePublisher(settings.eventQueueLimit);
      this.publisher = publisher;
      await this.registration.starting(this.hostIp, this.address, settings.registrationLeaseTtlSec);
      this.registered = true;
      checkpoint();

      const kernelHost = this.options.kernelHostOverride ?? this.hostIp;
      const { gpus, images, pool, kernels, drain } = await this.room.build({
        options: this.options,
        log: this.log,
        etcd: this.etcd,
        docker: this.docker,
        settings: this.settings,
        kernelHost,
        accelerator: this.parts.accelerator,
        publish: (name, args) => publisher.emit(name, args),
        emitEvent: (name, args) => this.emitEvent(name, args),
        clusterShare: () => this.demand?.value ?? {},
        scratch,
        checkpoint,
        modern,
        node: this.node,
        rpcSources: {
          rpcTallies: () => [this.dispatcher?.tally, modern.tally].flatMap((t) => (t ? [t] : [])),
          eventSinks: () => [
            { sink: 'push', stats: publisher.snapshot() },
            { sink: 'redis', stats: modern.sink.snapshot() },
          ],
        },
        announceDrain: async (state) => {
          if (state) await this.registration.record('draining', JSON.stringify(state));
          else await this.registration.forget('draining');
          this.heartbeat?.kick();
        },
      });

      const rpc = buildRpc({
        options: this.options,
        log: this.log,
        docker: this.docker,
        settings: this.settings,
        kernelHost,
        keyPair: this.keyPair,
        modern,
        node: this.node,
        room: this.room,
        kernels,
        images,
        gpus,
        drain,
        rpcMaxMessageBytes: settings.rpcMaxMessageBytes,
        requestStop: (reason) => {
          this.stop(reason).then(
            () => this.onSelfStop?.(),
            (err: unknown) => this.log.error('stopping on shutdown_agent failed', { error: errorMessage(err) }),
          );
        },
      });
      this.dispatcher = rpc.dispatcher;
      this.router = rpc.router;
      await startRpc(rpc, { options: this.options, log: this.log, keyPair: this.keyPair, modern });

      this.heartbeat = new Heartbeat(
        {
          log: this.log.child({ component: 'heartbeat' }),
          codec: msgpackCodec,
          emit: (name, args) => this.emitEvent(name, args),
          identity: () => ({
            ip: this.hostIp,
            region: this.options.region,
            addr: this.address,
            ...(this.keyPair ? { public_key: this.keyPair.publicKey } : {}),
            ...(this.room.network ? { kernel_isolation: this.room.network.state().isolation } : {}),
            ...(this.room.drain?.value ? { draining: true } : {}),
          }),
          resources: () => ({ ...detectResources(), ...kernels.capacity(), gpuSlots: gpus.slots }), // schedulable totals (README, memory accounting)
          listImages: () => images.heartbeatImages(),
          sample: async () => {
            const [node, kernelStats] = await Promise.all([this.node.read(), kernels.sampleStats()]);
            return { node, kernels: kernelStats };
          },
          record: (beat) => this.registration.record('heartbeat', JSON.stringify(beat)),
        },
        settings.heartbeatIntervalSec * 1000,
      );
      this.managerLink = new ManagerLink({
        etcd: this.etcd,
        log: this.log.child({ component: 'manager-link' }),
        setSink: (endpoint, serverKey) => publisher.setSink(endpoint, serverKey),
        onAttach: () => {
          // A new sink may be a new manager: introduce the agent, then beat at once.
          publisher.emit('instance_started', []);
          kernels.flushReports();
          this.heartbeat?.kick();
        },
      });
      await this.managerLink.start();
      await modern.startEvents();
      await this.settings.watch();
      checkpoint();
      this.heartbeat.start();
      kernels.startBackground();
      this.settings.onPoolChange = () => pool.reconfigured();
      // The prepull list's images before the pool fills (a pooled image among them is then pulled once).
      this.prepull = new Prepull(images, () => this.settings.value.prepull, this.log.child({ component: 'prepull' }));
      await this.prepull.start(settings.prepullBeforeRunning, this.abort.signal);
      pool.start();
      this.demand = shareDemand(
        this.etcd,
        this.options.agentId,
        this.log,
        () => this.settings.poolValue,
        () => pool.reconfigured(),
      );
      await this.registration.running();
      checkpoint();
      this.transition('starting', 'running');
    } catch (err) {
      const aborted = this.abort.signal.aborted;
      await this.release();
      this.transition(this.state, aborted ? 'stopped' : 'failed');
      throw err;
    }
  }

  /**
   * Drains and stops the agent; a second call waits for the first. Kernels
   * keep running. Called while starting, it aborts the start, which releases
   * what it took.
   */
  stop(reason = 'shutdown'): Promise<void> {
    this.stopping ??= (async () => {
      if (this.state === 'starting') {
        this.abort.abort(new Error('the agent was stopped while starting'));
        await this.starting?.catch(() => undefined); // only waits for the aborted start to settle: start() reports its own failure
      }
      if (this.state === 'running') await this.drain(reason);
    })();
    return this.stopping;
  }

  /**
   * Stops on SIGTERM as sigterm_action says: `leave` stops at once (kernels
   * keep running), `drain` first drains the node (src/services/drain.ts) until
   * its kernels have ended or sigterm_drain_deadline destroyed them.
   */
  async stopOnSignal(signal: string): Promise<void> {
    const s = this.settings.value;
    if (this.state === 'running' && s.sigtermAction === 'drain' && this.room.drain) {
      this.log.info('stopping on signal; draining first (sigterm_action drain)', { signal, deadlineSec: s.sigtermDrainDeadlineSec });
      await this.room.drain.drainForStop(s.sigtermDrainDeadlineSec);
    } else this.log.info('stopping on signal; kernels keep running', { signal });
    await this.stop('shutdown');
  }

  private async drain(reason: string): Promise<void> {
    this.transition('running', 'stopping');
    this.dispatcher?.stopAccepting();
    this.room.kernels?.drain(); // calls waiting on runs answer `continued` now, never a `finished` that did not happen
    this.modern?.stopAccepting();
    const idle = Promise.all([this.router?.idle(), this.modern?.idle()]);
    const timedOut = await Promise.race([
      idle.then(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(true), DRAIN_TIMEOUT_MS).unref()),
    ]);
    if (timedOut)
      this.log.warn('some RPC calls were still running after the drain timeout; closing anyway', { timeoutMs: DRAIN_TIMEOUT_MS });
    await this.heartbeat?.stop();
    this.emitEvent('instance_terminated', [reason]);
    await this.release();
    this.transition('stopping', 'stopped');
  }

  /** Releases everything start() may have taken, in reverse order; never throws. */
  private async release(): Promise<void> {
    await this.heartbeat?.stop();
    await this.demand?.stop();
    await this.room.close();
    await this.settings.stop();
    await this.managerLink?.stop();
    await this.registration.stopChecking();
    if (this.registered) {
      await this.registration
        .deregister()
        .catch((err: unknown) => this.log.warn('could not deregister from etcd', { error: errorMessage(err) }));
      this.registered = false;
    }
    await this.router?.close();
    await this.modern?.closeRpc();
    await Promise.all([this.publisher?.close(1000), this.modern?.closeEvents(1000)]);
    this.etcd.close();
  }

  /** The figures of the host port range (src/ports/): held, ready and cooling ports. */
  portStats(): PortRangeStats {
    return this.docker.ports.stats();
  }

  private applySettings(s: Settings): void {
    this.heartbeat?.setInterval(s.heartbeatIntervalSec * 1000);
    void this.room.gpus?.refresh(); // gpu_allow may have changed
    void this.prepull?.update();
  }

  private makePublisher(queueLimit: number): EventPublisher {
    return new EventPublisher({
      agentId: this.options.agentId,
      codec: msgpackCodec,
      log: this.log.child({ component: 'events' }),
      queueLimit,
      keyPair: this.keyPair ?? undefined,
    });
  }

  private transition(from: AgentState, to: AgentState): void {
    if (this.state !== from) this.log.debug('unexpected state transition', { expected: from, actual: this.state, to });
    this.log.info(`agent ${to}`, { from: this.state });
    this.state = to;
  }
}
