/**
 * The RPC side of the composition root, built by src/agent.ts at start: the
 * 2018 method table bound to the kernel room's services, the modern side's
 * Callosum table, the router that serves both on the agent port (and its
 * start), and get_node_stats, answered from the agent's node figures and
 * kernel room.
 */
import type { Logger } from './log.js';
import { ConfigError, errorMessage } from './errors.js';
import type { AgentOptions } from './config/options.js';
import type { KeyPair } from './config/keys.js';
import { detectResources } from './node/resources.js';
import type { NodeMonitor } from './node/stats.js';
import { slotFigures } from './node/memory.js';
import { msgpackCodec } from './wire/codec.js';
import { RpcRouter } from './wire/router.js';
import { Dispatcher } from './rpc/dispatcher.js';
import type { NodeStatsResult } from './rpc/results.js';
import { kernelBindings } from './bindings/kernels.js';
import { fileBindings } from './bindings/files.js';
import { runBindings } from './bindings/runs.js';
import { imageBindings } from './bindings/images.js';
import { appBindings } from './bindings/apps.js';
import { drainBindings } from './bindings/drain.js';
import { commitBindings } from './bindings/commit.js';
import type { NodeDrain } from './services/drain.js';
import type { LiveSettings } from './services/live-settings.js';
import type { KernelService } from './kernels/service.js';
import { KernelApps } from './kernels/apps.js';
import type { ImageService } from './images/service.js';
import type { GpuService } from './accelerators/gpus.js';
import type { RangedDocker } from './ports/ranged-docker.js';
import type { ModernSide } from './modern-side.js';
import type { KernelRoom } from './kernel-room.js';

/** The parts the RPC side is built from: the agent's own, and the kernel room's services. */
export interface RpcParts {
  options: AgentOptions;
  log: Logger;
  docker: RangedDocker;
  settings: LiveSettings;
  kernelHost: string;
  keyPair: KeyPair | null;
  modern: ModernSide;
  node: NodeMonitor;
  room: KernelRoom;
  kernels: KernelService;
  images: ImageService;
  gpus: GpuService;
  /** The node's drain: drain and undrain, on both generations. */
  drain: NodeDrain;
  /** The rpc_max_message_bytes setting at start. */
  rpcMaxMessageBytes: number;
  /** shutdown_agent: stops the agent. */
  requestStop: (reason: string) => void;
}

/**
 * Builds the RPC side: the dispatcher of the 2018 method table, the modern
 * side's table, and the router serving both (not started yet).
 */
export function buildRpc(p: RpcParts): { dispatcher: Dispatcher; router: RpcRouter } {
  const { kernels, images, gpus } = p;
  const dispatcher = new Dispatcher(
    [
      ...kernelBindings(
        kernels,
        () => nodeStats(p.node, p.room, kernels),
        () => p.settings.value.destroyAbandonedCreates,
      ),
      ...fileBindings(kernels),
      ...runBindings(kernels),
      ...imageBindings(images),
      ...commitBindings(kernels, images),
      ...appBindings(new KernelApps(kernels), p.log.child({ component: 'rpc' })),
      ...drainBindings(p.drain),
    ],
    p.log.child({ component: 'rpc' }),
    '2018',
  );
  const callosum = p.modern.serve(
    {
      kernels,
      resources: () => ({ ...detectResources(), ...kernels.capacity(), gpuSlots: gpus.slots }),
      ports: {
        assign: () => p.docker.assignPort(p.settings.value.kernelPublishAddr || p.kernelHost),
        release: (port) => p.docker.releasePort(port),
      },
      images,
      gpus: () => gpus.report(),
      requestStop: p.requestStop,
      sessionNetworks: p.room.sessionNetworks!,
      sessionOverlays: p.room.sessionOverlays!,
      extra: drainBindings(p.drain),
    },
    p.keyPair?.publicKey ?? null,
  );
  const router = new RpcRouter({
    endpoint: `tcp://${p.options.bindHost}:${p.options.agentPort}`,
    codec: msgpackCodec,
    handler: dispatcher.handle,
    log: p.log.child({ component: 'rpc' }),
    maxMessageBytes: p.rpcMaxMessageBytes,
    curve: p.keyPair ? { ...p.keyPair, allows: (key) => p.settings.value.rpcAllowedKeys.includes(key) } : undefined,
    callosum,
  });
  return { dispatcher, router };
}

/**
 * Starts the RPC side built by {@link buildRpc}: the router listening on the
 * agent port (a port taken is a ConfigError), then the modern side's CURVE port.
 */
export async function startRpc(
  rpc: { dispatcher: Dispatcher; router: RpcRouter },
  p: Pick<RpcParts, 'options' | 'log' | 'keyPair' | 'modern'>,
): Promise<void> {
  await rpc.router.start().catch((err: unknown) => {
    throw new ConfigError(
      `cannot listen on ${p.options.bindHost}:${p.options.agentPort} (${errorMessage(err)}): ` +
        'stop what holds the port or choose another with --agent-port',
    );
  });
  p.log.info('serving RPC', { endpoint: rpc.router.endpoint, curve: p.keyPair !== null });
  await p.modern.startCurve(rpc.dispatcher.handle);
}

/** Answers get_node_stats: the node's figures, its slots, each kernel's cgroup figures and the GPUs. */
async function nodeStats(monitor: NodeMonitor, room: KernelRoom, kernels: KernelService): Promise<NodeStatsResult> {
  const [node, kernelStats] = await Promise.all([monitor.read(), kernels.sampleStats()]);
  return {
    time: Date.now() / 1000,
    node,
    slots: slotFigures(kernels),
    kernels: kernelStats,
    gpu_path: room.gpus?.state.path ?? 'none',
    gpus: room.gpus?.report() ?? [],
  };
}
