/**
 * ModernSide is the part of the composition root that serves modern
 * (Callosum, Backend.AI 20.03+) managers (docs/modern-managers.rst): the
 * modern method table's handlers and dispatcher, the Redis event sink with
 * the link that follows `config/redis`, the modern forms of the agent's
 * events, and the optional second ROUTER with CURVE. The Agent builds one,
 * starts it in its own order and closes it; several live side by side in
 * one process (tests).
 */
import type { Logger } from './log.js';
import { ConfigError, errorMessage } from './errors.js';
import type { Settings } from './config/setting-table.js';
import type { EtcdStore } from './adapters/etcd.js';
import { loadKeyPair, type KeyPair } from './config/keys.js';
import { msgpackCodec } from './wire/codec.js';
import { modernCodec } from './wire/modern-codec.js';
import { RpcRouter, type CallosumOptions, type RequestHandler, type RouterStats } from './wire/router.js';
import type { Binding } from './rpc/dispatcher.js';
import { zapDomains } from './wire/zap.js';
import { Dispatcher } from './rpc/dispatcher.js';
import type { CallTally } from './rpc/call-tally.js';
import { callosumFailure } from './rpc/callosum-failure.js';
import { RedisStreamSink, type RedisTarget } from './events/redis-stream.js';
import { ModernEvents } from './events/modern-events.js';
import type { SinkStats } from './events/sink.js';
import { ModernRpc, type ModernRpcDeps } from './services/modern-rpc.js';
import { modernCommitBindings } from './bindings/commit.js';
import { modernImageBindings, type ModernImageDeps } from './bindings/modern-images.js';
import type { ModernEventName } from './events/catalogue.js';
import { RedisLink } from './services/redis-link.js';

/** What the modern side needs from the agent. */
export interface ModernSideOptions {
  agentId: string;
  log: Logger;
  etcd: EtcdStore;
  version: string;
  hostIp: string;
  bindHost: string;
  /** The 2018 RPC address, which modern managers use too when there is no CURVE socket. */
  address: string;
  settings(): Settings;
}

export class ModernSide {
  /** The Redis stream sink; it drops and counts until `config/redis` is set. */
  readonly sink: RedisStreamSink;
  private keyPair: KeyPair | null = null;
  private dispatcher: Dispatcher | null = null;
  private events: ModernEvents | null = null;
  private link: RedisLink | null = null;
  private curveRouter: RpcRouter | null = null;
  private rpc: ModernRpc | null = null;
  /** Told where modern managers' Redis is whenever `config/redis` changes (the modern stats go there too). */
  onRedisTarget: ((target: RedisTarget | null) => void) | null = null;

  constructor(private readonly o: ModernSideOptions) {
    this.sink = new RedisStreamSink({
      agentId: o.agentId,
      codec: msgpackCodec,
      log: o.log.child({ component: 'events-redis' }),
      queueLimit: o.settings().eventQueueLimit,
    });
  }

  /** Reads the CURVE key pair of the second socket when callosum_curve_port is set; a ConfigError names what is missing. */
  async loadKeys(): Promise<void> {
    const s = this.o.settings();
    if (s.callosumCurvePort === 0) return;
    const file = s.callosumKeypairFile || s.rpcKeypairFile;
    if (!file)
      throw new ConfigError(
        'callosum_curve_port is set but neither callosum_keypair_file nor rpc_keypair_file is: the CURVE socket needs a key pair (agent keygen makes one)',
      );
    this.keyPair = await loadKeyPair(file);
    if (s.callosumManagerKeys.length === 0) {
      throw new ConfigError(
        'callosum_curve_port is set but callosum_manager_keys is empty, so no modern manager could call: list their public keys',
      );
    }
  }

  /** The `tcp://host:port` modern managers are told to reach this agent at: the CURVE socket when there is one. */
  get address(): string {
    const port = this.o.settings().callosumCurvePort;
    return this.keyPair && port > 0 ? `tcp://${this.o.hostIp}:${port}` : this.o.address;
  }

  /**
   * Builds the modern method table's handlers over the agent's services and
   * returns what the 2018 ROUTER needs to serve Callosum calls beside aiozmq
   * ones. `publicKey` is the agent's key that heartbeats tell (the second
   * socket's, else the 2018 one's).
   */
  serve(
    deps: Pick<ModernRpcDeps, 'kernels' | 'requestStop' | 'resources' | 'ports' | 'sessionNetworks' | 'sessionOverlays'> &
      Pick<ModernImageDeps, 'images' | 'gpus'> & {
        /** Bindings of methods both generations serve alike (drain, undrain; src/bindings/). */
        extra: Binding[];
      },
    fallbackPublicKey: string | null,
  ): CallosumOptions {
    const log = this.o.log.child({ component: 'rpc-modern' });
    const emitModern = (name: ModernEventName, args: unknown[]) => this.events?.emitModern(name, args);
    const rpc = new ModernRpc({ ...deps, log, version: this.o.version, agentAddr: this.address, emitModern });
    this.rpc = rpc;
    const images = modernImageBindings({ images: deps.images, gpus: deps.gpus, agentId: this.o.agentId, emitModern, log });
    const commit = modernCommitBindings({ kernels: deps.kernels, images: deps.images, emitModern, log });
    this.dispatcher = new Dispatcher([...rpc.bindings(), ...images, ...commit, ...deps.extra], log, 'modern');
    this.events = new ModernEvents(this.sink, rpc, msgpackCodec, () => ({
      scalingGroup: 'default',
      publicHost: this.o.hostIp,
      version: this.o.version,
      architecture: process.arch === 'arm64' ? 'aarch64' : 'x86_64',
      publicKey: this.keyPair?.publicKey ?? fallbackPublicKey,
      addr: this.address,
      imagePrefix: this.o.settings().imagePrefix,
    }));
    return { handler: this.dispatcher.handle, codec: modernCodec, failure: callosumFailure };
  }

  /** Binds the second ROUTER with CURVE when one is set; `aiozmq` serves 2018 calls on it too. */
  async startCurve(aiozmq: RequestHandler): Promise<void> {
    const pair = this.keyPair;
    if (!pair || !this.dispatcher) return;
    const s = this.o.settings();
    const port = s.callosumCurvePort;
    this.curveRouter = new RpcRouter({
      endpoint: `tcp://${this.o.bindHost}:${port}`,
      codec: msgpackCodec,
      handler: aiozmq,
      log: this.o.log.child({ component: 'rpc-curve' }),
      maxMessageBytes: s.rpcMaxMessageBytes,
      // ZAP domain "local", as Backend.AI's agent; a second agent in this process (tests) takes one of its own
      curve: {
        ...pair,
        allows: (key) => this.o.settings().callosumManagerKeys.includes(key),
        zapDomain: zapDomains().includes('local') ? undefined : 'local',
      },
      callosum: { handler: this.dispatcher.handle, codec: modernCodec, failure: callosumFailure },
    });
    await this.curveRouter.start().catch((err: unknown) => {
      throw new ConfigError(
        `cannot listen on ${this.o.bindHost}:${port} for modern managers (${errorMessage(err)}): choose another callosum_curve_port`,
      );
    });
    this.o.log.info('serving RPC to modern managers with CURVE', { endpoint: this.curveRouter.endpoint, publicKey: pair.publicKey });
  }

  /** Follows `config/redis`, then says `agent_started` on the stream (once: a 2018 sink's attach introduces the agent to that sink only). */
  async startEvents(): Promise<void> {
    this.link = new RedisLink({
      etcd: this.o.etcd,
      log: this.o.log.child({ component: 'redis-link' }),
      setTarget: (t) => {
        this.sink.setTarget(t);
        this.onRedisTarget?.(t);
      },
    });
    await this.link.start();
    this.events?.fromAgent('instance_started', []);
  }

  /** The session of a kernel a modern manager created; null for the 2018 managers' kernels. */
  sessionOf(kernelId: string): string | null {
    return this.rpc?.sessionOf(kernelId) ?? null;
  }

  /** Takes an event as the agent emits it for 2018 managers (its modern form goes to the stream). */
  fromAgent(name: string, args: unknown[]): void {
    this.events?.fromAgent(name, args);
  }

  /** The modern table's per-method tally (null before {@link serve}). */
  get tally(): CallTally | null {
    return this.dispatcher?.tally ?? null;
  }

  /** From now on, new modern calls are refused as shutting down. */
  stopAccepting(): void {
    this.dispatcher?.stopAccepting();
  }

  /** Resolves once the second socket has no call in flight. */
  async idle(): Promise<void> {
    await this.curveRouter?.idle();
  }

  /** Counters of the second socket (null when off) and of the Redis sink. */
  stats(): { rpcCurve: RouterStats | null; modernEvents: SinkStats } {
    return { rpcCurve: this.curveRouter?.snapshot() ?? null, modernEvents: this.sink.snapshot() };
  }

  /** Stops following etcd and closes the second socket; never throws. */
  async closeRpc(): Promise<void> {
    await this.link?.stop();
    await this.curveRouter?.close();
  }

  /** Lets queued events leave (up to `lingerMs`) and disconnects from Redis. */
  closeEvents(lingerMs: number): Promise<void> {
    return this.sink.close(lingerMs);
  }
}
