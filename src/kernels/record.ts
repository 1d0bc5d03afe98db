/**
 * The kernel service's shared types: what a held kernel is (KernelRecord) and
 * what the service needs from the rest of the agent (KernelServiceDeps). They
 * live here, below the service and the modules it composes (creation,
 * re-adoption), so that those need not import the service.
 */
import type { Logger } from '../log.js';
import type { ContainerSecurity, DockerEngine } from '../adapters/docker.js';
import type { ImageTraits } from '../containers/image-traits.js';
import type { RunnerEnv } from '../containers/runner-env.js';
import type { KernelSpec } from '../containers/spec.js';
import type { CgroupStats } from './stats.js';
import type { FileLimits } from './files.js';
import type { WarmPool } from '../pool/pool.js';
import type { KernelInfo, ServicePort } from '../rpc/results.js';
import type { GpuService } from '../accelerators/gpus.js';
import type { AgentEventName } from '../events/catalogue.js';
import type { ScratchHomes } from '../scratch/homes.js';
import type { Settings } from '../config/setting-table.js';

/** A kernel the agent holds. */
export interface KernelRecord {
  id: string;
  spec: KernelSpec;
  traits: ImageTraits;
  containerId: string;
  pid: number | null;
  ports: number[];
  /** The image's apps with their host ports (docs/service-ports.rst). */
  servicePorts?: ServicePort[];
  /** The last known state of each app started through start_service (src/kernels/apps.ts). */
  appStates?: Record<string, 'running' | 'stopped' | 'failed'>;
  cpuSet: number[];
  scratchDir: string;
  createdAt: number;
  lastUsed: number;
  state: 'running' | 'restarting' | 'destroying';
  /** A restart in progress; calls on the kernel wait for it. */
  busy: Promise<unknown> | null;
  /** Terminal shells hung up by a warm-pool claim; the terminal opens once the runner has started another. */
  staleShells?: number[];
  /** The rename of a claimed container to the kernel's name, done after the reply; removal waits for it. */
  renamed?: Promise<void>;
  /** Re-adopted from a previous agent process: runs it had in flight may be picked up, or are lost. */
  adopted?: boolean;
  /** MiB of the memory book its home holds beside its memory limit (a memory home's size); none otherwise. */
  homeMemMiB?: number;
}

/**
 * The settings the kernels read (live): the compiled ones they use as they
 * are (src/config/setting-table.ts has their defaults, and nothing here
 * defaults them again) and what the agent derives from the settings and its
 * flags.
 */
export type KernelSettings = Pick<
  Settings,
  | 'imagePrefix'
  | 'imageAllowList'
  | 'kernelUid'
  | 'execTimeoutSec'
  | 'runnerReadyTimeoutSec'
  | 'workspaceTemplate'
  | 'workspaceTemplateMaxBytes'
  | 'bootstrapTimeoutSec'
  | 'destroyTimeoutSec'
  | 'scratchReserveMiB'
  | 'syncGraceSec'
  | 'selfSyncIntervalSec'
  | 'memReserveMiB'
  | 'memOvercommit'
  | 'scratchSizeMiB'
  | 'kernelShmMiB'
> & {
  /** The host folder vfolder mounts come from (etcd `volumes/_mount`). */
  vfolderRoot: string;
  /** --idle-timeout. */
  idleTimeoutSec: number;
  fileLimits: FileLimits;
  security: ContainerSecurity;
  /** Host address kernel ports are published on (kernel_publish_addr); empty = `kernelHost`. */
  publishAddr: string;
  /** The runner environment found at start (runner_env_root), for images without a runner; null: none, and why. */
  runnerEnv: RunnerEnv | null;
  runnerEnvProblem: string | null;
};

/** What the service needs from the rest of the agent. */
export interface KernelServiceDeps {
  docker: DockerEngine;
  stats: CgroupStats;
  log: Logger;
  emit(name: AgentEventName, args: unknown[]): void;
  agentId: string;
  scratchRoot: string;
  kernelHost: string;
  cores: number[];
  /** Current values of live settings. */
  settings(): KernelSettings;
  createConcurrency: number;
  cpuOvercommit: number;
  /** download_file archives built at once (download_concurrency). */
  downloadConcurrency: number;
  /** The node's GPUs (src/accelerators); none: a kernel asking for one is refused like on the CPU fallback. */
  gpus?: GpuService | null;
  /** The kernels' homes (scratch_type); none: plain folders on the scratch root. */
  scratch?: ScratchHomes | null;
  /** The warm pool asked before every cold create; none: always cold. */
  pool?: WarmPool | null;
  /** Pulls a cold create's image when it is missing (src/images/); none: the image must be here. */
  images?: { ensure(image: string, kernelId: string): Promise<void> } | null;
}

/** What the stats reader needs of a kernel (src/kernels/stats.ts). */
export function statsTarget(rec: KernelRecord): { containerId: string; pid: number | null; scratchDir: string } {
  return { containerId: rec.containerId, pid: rec.pid, scratchDir: rec.scratchDir };
}

/** The kernel info of `create_kernel` (docs/wire-contract.rst, "RPC") for a held kernel. */
export function kernelInfo(rec: KernelRecord, kernelHost: string): KernelInfo {
  const [replIn, replOut, stdin, stdout] = rec.ports as [number, number, number, number];
  return {
    id: rec.id,
    kernel_host: kernelHost,
    repl_in_port: replIn,
    repl_out_port: replOut,
    stdin_port: stdin,
    stdout_port: stdout,
    container_id: rec.containerId,
    cpu_set: rec.cpuSet,
    gpu_set: rec.spec.gpuSet ?? [],
    service_ports: rec.servicePorts ?? [],
  };
}
