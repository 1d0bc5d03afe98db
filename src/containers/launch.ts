/**
 * How a kernel container is put together: its labels (src/adapters/labels.ts),
 * environment, mounts and limits, read from the kernel spec and the image's
 * traits (src/containers/image-traits.ts; docs/wire-contract.rst, "Containers"); the preparation of its scratch
 * home (done through src/scratch/home-ops.ts), and what a container that did not come up printed last.
 */
import { promises as fs } from 'node:fs';
import type { ContainerRequest, ContainerSecurity, DockerEngine } from '../adapters/docker.js';
import type { DeviceHostConfig } from '../accelerators/types.js';
import { shmMiBOf, type KernelSpec } from './spec.js';
import { langName } from '../config/lang.js';
import { LABELS } from '../adapters/labels.js';
import type { ImageTraits } from './image-traits.js';
import { prepareConfig, type ConfigFile } from '../scratch/home-ops.js';
import { kernelNetworkName } from './kernel-network.js';
import { injection, type RunnerEnv } from './runner-env.js';

/** CPU weight of warm pooled containers: they hold every core but yield to kernels until claimed. */
export const POOL_CPU_SHARES = 2;

/** Everything a container request is built from. */
export interface LaunchInput {
  agentId: string;
  kernelId: string;
  spec: KernelSpec;
  cpuSet: number[];
  traits: ImageTraits;
  scratchDir: string;
  kernelUid: number;
  publishHost: string;
  security: ContainerSecurity;
  /** The kernel_shm_size setting: the /dev/shm of a kernel whose spec names none ({@link shmMiBOf}). */
  shmMiB: number;
  createdAt: number;
  /** The Docker arguments of the kernel's GPUs (src/accelerators); none: no GPU. */
  gpu?: (DeviceHostConfig & { cpusetMems: string }) | null;
  /** Set for a warm pooled container: its pool key (`<lang>/<type>`), slot and recipe, instead of a kernel id. */
  pool?: { key: string; slot: string; recipe: string };
  /** Set for the new container of a restart: the container it replaces (a label, and a name of its own until the old one is gone). */
  replaces?: string;
  /** The node's runner environment, mounted into a container whose image carries no runner (`traits.runner`). */
  runnerEnv?: RunnerEnv | null;
}

/** The container name, `kernel.<lang name>.<kernel id>`. */
export function containerName(lang: string, kernelId: string): string {
  return `kernel.${langName(lang)}.${kernelId}`;
}

/** Builds the Docker request of a kernel container. */
export function containerRequest(i: LaunchInput): ContainerRequest {
  const env = Object.entries(i.spec.environ).map(([k, v]) => `${k}=${v}`);
  for (const name of i.traits.coreCountEnvs) env.push(`${name}=${i.cpuSet.length}`);
  if (i.traits.features.has('uid-match')) env.push(`LOCAL_USER_ID=${i.kernelUid}`);
  const gpuCount = i.spec.gpuSet?.length ?? 0;
  for (const name of i.traits.gpuCountEnvs) env.push(`${name}=${gpuCount}`);
  const gpu = i.gpu && gpuCount > 0 ? i.gpu : null;
  const shmMiB = shmMiBOf(i.spec, i.shmMiB);
  const cluster = i.pool ? null : i.spec.cluster;
  const plan = i.traits.runner;
  const inject = !plan.baked && i.runnerEnv ? injection(plan, i.runnerEnv, i.kernelUid) : null;
  if (inject) env.push(...inject.env.filter((v) => !env.includes(v)));
  const identity: Record<string, string> = i.pool
    ? { [LABELS.pool]: i.pool.key, [LABELS.poolSlot]: i.pool.slot, [LABELS.poolRecipe]: i.pool.recipe }
    : { [LABELS.kernel]: i.kernelId, ...(i.replaces ? { [LABELS.replaces]: i.replaces } : {}) };
  return {
    name: containerName(i.spec.lang, i.pool ? `pool-${i.pool.slot}` : i.kernelId) + (i.replaces ? `.next-${i.replaces.slice(0, 12)}` : ''),
    image: i.spec.image,
    ...(i.pool ? { cpuShares: POOL_CPU_SHARES } : {}),
    labels: {
      [LABELS.agent]: i.agentId,
      ...identity,
      [LABELS.lang]: i.spec.lang,
      [LABELS.cpuSet]: i.cpuSet.join(','),
      [LABELS.gpuSet]: (i.spec.gpuSet ?? []).join(','),
      [LABELS.memMiB]: String(i.spec.memMiB),
      [LABELS.shmMiB]: String(shmMiB),
      [LABELS.created]: String(i.createdAt),
      ...(cluster ? { [LABELS.clusterNetwork]: cluster.network, [LABELS.clusterHostname]: cluster.hostname } : {}),
      ...(cluster?.overlay ? { [LABELS.clusterOverlay]: '1' } : {}),
      ...(i.pool ? {} : { [LABELS.environKeys]: Object.keys(i.spec.environ).join(',') }),
      ...(inject ? { [LABELS.runnerEnv]: i.runnerEnv!.digest } : {}),
    },
    env: [...env, ...(gpu?.env ?? [])],
    binds: [
      `${i.scratchDir}:/home/work:rw`,
      ...i.spec.mounts.map((m) => `${m.hostPath}:/home/work/${m.name}:rw`),
      ...(gpu?.binds ?? []),
      ...(inject ? [inject.bind] : []),
    ],
    ...(inject ? { entrypoint: inject.entrypoint, init: true } : {}),
    memoryBytes: i.spec.memMiB * 1024 * 1024,
    // Not taken from the memory limit (as the 24.09 agent did): /dev/shm's pages are charged to the kernel's memory cgroup already.
    shmBytes: shmMiB * 1024 * 1024,
    cpusetCpus: i.cpuSet.join(','),
    ...(gpu ? { devices: gpu.devices, deviceRequests: gpu.deviceRequests, runtime: gpu.runtime, cpusetMems: gpu.cpusetMems } : {}),
    publishHost: i.publishHost,
    // A session's kernel joins its session's network, known there by its cluster hostname. A multi-node
    // session's overlay has no way out of its own: the kernel network, under the firewall's cover, carries
    // the kernel's ports and egress, and the overlay only the session (src/containers/session-overlay.ts).
    network: cluster && !cluster.overlay ? cluster.network : kernelNetworkName(i.agentId),
    ...(cluster && !cluster.overlay ? { networkAliases: [cluster.hostname] } : {}),
    ...(cluster?.overlay ? { overlay: { name: cluster.network, aliases: [cluster.hostname] } } : {}),
    ...(cluster ? { hostname: cluster.hostname } : {}),
    servicePorts: i.traits.services.ok ? i.traits.services.services.map((x) => x.port) : [],
    security: i.security,
  };
}

/** Parses a comma-separated list of core numbers from a label. */
export function parseCoreList(value: string | undefined): number[] {
  return (value ?? '')
    .split(',')
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n >= 0);
}

/**
 * Creates the scratch home with `.config/environ.txt` (`KEY=VALUE` lines),
 * owned by the kernel user so that code in the kernel can write its home.
 * `.config` also marks the directory as the agent's for the orphan sweep.
 * The kernel may have planted anything in an existing home (a restart):
 * the work goes through descriptors and never follows a link
 * (src/scratch/home-ops.ts); what stood in the way of `.config` is moved
 * aside and its new names returned.
 */
export async function prepareScratch(
  dir: string,
  environ: Record<string, string>,
  uid: number,
  files: ConfigFile[] = [],
): Promise<string[]> {
  await fs.mkdir(dir, { recursive: true, mode: 0o755 }); // the agent's own path under the scratch root
  return prepareConfig(dir, environ, uid, files);
}

/**
 * The files a kernel's create leaves in its `.config` besides environ.txt:
 * the session's SSH key pair (`id_cluster`, the kernel user's only, and
 * `id_cluster.pub`), which its runner installs in ~/.ssh (docs/sessions.rst).
 */
export function configFilesOf(spec: Pick<KernelSpec, 'cluster'>): ConfigFile[] {
  const ssh = spec.cluster?.ssh;
  if (!ssh) return [];
  return [
    { name: 'id_cluster', data: ssh.privateKey, mode: 0o600 },
    { name: 'id_cluster.pub', data: `${ssh.publicKey}\n`, mode: 0o644 },
  ];
}

/**
 * The last `n` lines a container printed, joined with ` | ` (or
 * `(nothing)`), for the message of a runner that did not come up. Never
 * rejects: a container already gone has nothing to say.
 */
export async function lastLines(docker: Pick<DockerEngine, 'logs'>, containerId: string, n = 8): Promise<string> {
  const logs = await docker.logs(containerId, 200).catch(() => '');
  return (
    logs
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '')
      .slice(-n)
      .join(' | ') || '(nothing)'
  );
}
