/**
 * The labels the agent puts on its containers and reads back through Docker:
 * enough to rebuild the agent's registry of kernels and pooled containers
 * after a restart, and to tell its containers from anyone else's. They live
 * beside the Docker adapter because every room that lists containers (the
 * kernels, the pool, the host port range) filters by them.
 */

/** Labels the agent puts on (and reads back from) its kernel containers. */
export const LABELS = {
  agent: 'io.compute-agent.agent',
  kernel: 'io.compute-agent.kernel-id',
  lang: 'io.compute-agent.lang',
  cpuSet: 'io.compute-agent.cpu-set',
  gpuSet: 'io.compute-agent.gpu-set',
  memMiB: 'io.compute-agent.mem-mib',
  /** MiB of the container's /dev/shm (it cannot change; a restart keeps it). */
  shmMiB: 'io.compute-agent.shm-mib',
  created: 'io.compute-agent.created',
  /** `<lang>/<type>` of a warm pooled container (no kernel id until claimed). */
  pool: 'io.compute-agent.pool',
  poolSlot: 'io.compute-agent.pool-slot',
  /** Digest of the settings a pooled container was made with (lock-down, kernel uid, publish address). */
  poolRecipe: 'io.compute-agent.pool-recipe',
  /** On the new container of a restart: the id of the container it replaces (re-adoption keeps the old one while it exists). */
  replaces: 'io.compute-agent.replaces',
  /** The digest of the runner environment mounted into the container (images without a runner: src/containers/runner-env.ts). */
  runnerEnv: 'io.compute-agent.runner-env',
  /** On a Docker network the agent made: what it is for (`kernels`). */
  network: 'io.compute-agent.network',
  /** On a kernel of a multi-kernel session: the session network it joined (re-adoption and restarts keep it there). */
  clusterNetwork: 'io.compute-agent.cluster-network',
  /** On a kernel of a multi-kernel session: its hostname among the session's kernels (main1, sub1, ...). */
  clusterHostname: 'io.compute-agent.cluster-hostname',
  /** On a kernel of a multi-node session: `1`, its session network is a Docker Swarm overlay joined beside the kernel network. */
  clusterOverlay: 'io.compute-agent.cluster-overlay',
  /**
   * The names of a kernel's environ (as its create or restart set it), comma-separated: re-adoption reads their
   * values back from the container's environment. Not on pooled containers, whose claims set the environ later.
   */
  environKeys: 'io.compute-agent.environ-keys',
  /** On an image saved from a kernel (src/images/commit.ts): the kernel's id. Only images with it may be tagged over or pushed. */
  committedFrom: 'io.compute-agent.committed-from',
} as const;
