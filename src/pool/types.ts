/**
 * The warm pool's shared types: an idle pooled container, what the pool
 * needs from the agent, and what a hygiene pass needs of the pool. They live
 * below both the pool (src/pool/pool.ts) and its hygiene pass
 * (src/pool/hygiene.ts), so that neither imports the other's module for them.
 */
import type { RunnerEnv } from '../containers/runner-env.js';
import type { Logger } from '../log.js';
import type { ContainerSecurity, DockerEngine } from '../adapters/docker.js';
import type { ImageTraits } from '../containers/image-traits.js';
import type { KernelRelay } from '../relay/kernel-relay.js';
import type { ClaimStore } from './claims.js';
import type { PinnedLimits } from './pinning.js';
import type { PoolSettings } from './settings.js';
import type { Settings } from '../config/setting-table.js';
import { resolveImage } from '../config/lang.js';
import type { GpuService } from '../accelerators/gpus.js';
import type { MemoryBook } from '../node/memory.js';

/** An idle, warm pooled container. */
export interface PooledContainer {
  containerId: string;
  /** `<lang>/<type>`. */
  key: string;
  lang: string;
  type: string;
  image: string;
  imageId: string;
  /** `poolRecipe` (hygiene.ts) of the settings it was made with ('' when its label has none). */
  recipe: string;
  slot: string;
  home: string;
  pid: number | null;
  ports: number[];
  traits: ImageTraits;
  idleSince: number;
  /** The GPUs it holds while idle (its type's count), handed to the kernel by a claim. */
  gpuSet: number[];
  /** When the runner last answered a readiness check. */
  checkedAt: number;
  /** A readiness check or a pause/unpause is under way: not to be handed out meanwhile (its relay would share the runner's output). */
  checking: boolean;
  /** Paused by `pool/freeze` (src/pool/freeze.ts): a claim or a check unpauses it first. */
  frozen: boolean;
  /** Its memory limit as charged to the memory book while idle (MiB; src/pool/charges.ts). */
  memMiB: number;
  /** The cores and memory it was pinned to at weight 1024 (src/pool/pinning.ts); null: unknown, a claim updates it. */
  limits: PinnedLimits | null;
  /**
   * The relay opened when it was created, kept for its readiness checks and
   * handed to the kernel by a claim (no connect on the claim's path; a second
   * relay would share the runner's output); null until one is needed.
   */
  relay: KernelRelay | null;
}

/** What the pool needs from the rest of the agent. */
export interface WarmPoolDeps {
  /** This node's share of the cluster's pending demand per lang and type (services/demand-share.ts); none: no share. */
  clusterShare?: () => Record<string, Record<string, number>>;
  docker: DockerEngine;
  log: Logger;
  agentId: string;
  scratchRoot: string;
  kernelHost: string;
  /** Every core of the node: pooled containers start on all of them, and are pinned among them once ready. */
  allCores: number[];
  /** How many kernels hold each core, to pin idle containers where the next claim's cores likely are. */
  coreLoad?(): ReadonlyMap<number, number>;
  settings(): PoolSettings;
  /** The kernels' memory book (src/node/memory.ts): idle pooled containers' limits are charged to it; none: not charged. */
  memory?: () => MemoryBook | null;
  /** The node's GPUs, for types with a GPU count; none: such types are not filled. */
  gpus?: GpuService | null;
  /** Pulls a pooled image before the pool fills with it (src/images/); none: the image must be here. */
  ensureImage?(image: string): Promise<void>;
  /** The kernel settings pooled containers are made with (the same as a cold create's). */
  kernelSettings(): Pick<
    Settings,
    'imagePrefix' | 'imageAllowList' | 'kernelUid' | 'workspaceTemplate' | 'workspaceTemplateMaxBytes' | 'kernelShmMiB'
  > & {
    security: ContainerSecurity;
    publishAddr: string;
    /** The runner environment for images without a runner (src/containers/runner-env.ts); null: none, and why. */
    runnerEnv: RunnerEnv | null;
    runnerEnvProblem: string | null;
  };
}

/** Counts for metrics, per `<lang>/<type>`. */
export interface PoolSizes {
  lang: string;
  type: string;
  idle: number;
  creating: number;
  claimed: number;
  /** Of the idle ones, how many wait paused (`pool/freeze`). */
  frozen: number;
}

/** What a hygiene pass works on: the pool's books, and the two things it may do to an idle container. */
export interface HygieneTarget {
  readonly deps: WarmPoolDeps;
  readonly idle: Map<string, PooledContainer>;
  readonly claimed: Map<string, string>;
  readonly creating: Map<string, string>;
  readonly claims: ClaimStore;
  /** Removes an idle container from the pool, saying why. */
  drop(c: PooledContainer, reason: string): Promise<void>;
  /** Checks that an idle container's runner answers within the timeout (a frozen one unpaused for it, then paused again). */
  check(c: PooledContainer, timeoutMs: number): Promise<void>;
}

/**
 * The image a pooled lang names under the settings in force (as a cold
 * create resolves it), or null when it names none now (the prefix or the
 * allow list changed under it).
 */
export function poolImage(s: Pick<Settings, 'imagePrefix' | 'imageAllowList'>, lang: string): string | null {
  try {
    return resolveImage(lang, s.imagePrefix, s.imageAllowList);
  } catch {
    return null;
  }
}
