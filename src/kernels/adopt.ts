/**
 * Re-adoption: rebuilds the kernel registry from the containers carrying the
 * agent's label after an agent restart. Running kernels are taken back as
 * they are (ports, cores, limits; a claimed warm-pool container by its claim
 * record), dead ones removed and queued for a `self-terminated` report, idle
 * pooled containers handed to the pool, and scratch homes that belong to no
 * kernel removed (their mounts and hostfiles first: src/scratch/homes.ts)
 * and reported terminated. Of the two containers a restart cut short left
 * (src/kernels/restart.ts), the old one is kept while it exists.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { KERNEL_PORTS, type ContainerState } from '../adapters/docker.js';
import type { KernelStats } from '../rpc/results.js';
import type { CpuAllocator } from './allocator.js';
import type { MemoryBook } from '../node/memory.js';
import { containerName, parseCoreList } from '../containers/launch.js';
import { LABELS } from '../adapters/labels.js';
import { imageTraits } from '../containers/image-traits.js';
import type { KernelRecord, KernelServiceDeps } from './record.js';
import { servicePortsOf } from '../containers/service-ports.js';
import { homesOf } from '../scratch/homes.js';
import { CONTAINER_HOME } from '../scratch/safe-walk.js';
import type { KernelSpec } from '../containers/spec.js';
import { errorMessage } from '../errors.js';
import { resolveImage } from '../config/lang.js';
import { removeTree } from '../scratch/home-ops.js';

/** What re-adoption fills in: the service's registry, core books and pending reports. */
export interface AdoptionContext {
  deps: KernelServiceDeps;
  cores: CpuAllocator;
  memory: MemoryBook;
  kernels: Map<string, KernelRecord>;
  reports: Array<[string, string, KernelStats | null]>;
}

/** Re-adopts the kernels (and idle pooled containers) of this agent. */
export async function adoptKernels({ deps, cores, memory, kernels, reports }: AdoptionContext): Promise<void> {
  const containers = await deps.docker.listByLabel(`${LABELS.agent}=${deps.agentId}`);
  const ids = new Set(containers.map((c) => c.id));
  for (const c of containers) {
    const replaces = c.labels[LABELS.replaces];
    if (replaces && ids.has(replaces)) {
      // A restart stopped before it retired the old container: the kernel is the old one, as it was.
      await deps.docker.remove(c.id).catch((err: unknown) =>
        deps.log.error('could not remove the new container of a restart cut short', {
          container: c.id.slice(0, 12),
          error: errorMessage(err),
        }),
      );
      deps.log.info('removed the new container of a restart cut short; the kernel is its old container', {
        kernelId: c.labels[LABELS.kernel],
      });
      continue;
    }
    const pooled = c.labels[LABELS.pool] !== undefined;
    if (pooled && !deps.pool) continue;
    const claim = pooled ? await deps.pool!.claimOf(c) : null;
    if (pooled && !claim) {
      await deps.pool!.adoptIdle(c);
      continue;
    }
    // A claimed pooled container's labels are those of the pool; its claim record says what it became.
    const labels = claim
      ? {
          ...c.labels,
          [LABELS.kernel]: claim.kernelId,
          [LABELS.lang]: claim.lang,
          [LABELS.cpuSet]: claim.cpuSet.join(','),
          [LABELS.memMiB]: String(claim.memMiB),
          [LABELS.created]: String(claim.createdAt),
        }
      : c.labels;
    const id = labels[LABELS.kernel];
    if (!id) continue;
    const scratchDir = path.join(deps.scratchRoot, id);
    const state = c.running ? await deps.docker.inspect(c.id) : null;
    const ports = KERNEL_PORTS.map((p) => state?.ports[p]);
    // A claim cut short before its home was renamed left a kernel without a home: as good as dead.
    const homeless =
      claim !== null &&
      !(await fs.stat(scratchDir).then(
        (st) => st.isDirectory(),
        () => false,
      ));
    if (!state?.running || ports.some((p) => !p) || homeless) {
      await deps.docker.remove(c.id);
      await deps.pool?.released(c.id);
      await homesOf(deps).remove(id);
      reports.push([id, 'self-terminated', null]);
      deps.log.info('removed a kernel that died while the agent was away', { kernelId: id });
      continue;
    }
    if (replaces) {
      // The old container is gone: the restart's new one is the kernel; it gets the kernel's name it had no room for before.
      await deps.docker.rename(c.id, containerName(labels[LABELS.lang] ?? '', id)).catch((err: unknown) =>
        deps.log.warn('could not give a restarted container the kernel name; it keeps its own', {
          kernelId: id,
          error: errorMessage(err),
        }),
      );
    }
    const home = await homesOf(deps)
      .reattach(id)
      .catch((err: unknown) => `not re-attached (${errorMessage(err)})`);
    if (home !== 'dir') deps.log.info('the home of a re-adopted kernel', { kernelId: id, home });
    const lang = labels[LABELS.lang] ?? '';
    const cpuSet = parseCoreList(labels[LABELS.cpuSet]);
    cores.claim(cpuSet, true);
    const homeMemMiB = await homesOf(deps).heldMemory(id); // a memory home's size, charged beside the limit
    memory.claim(id, (Number(labels[LABELS.memMiB]) || 0) + homeMemMiB);
    const gpuSet = parseCoreList(labels[LABELS.gpuSet]);
    deps.gpus?.adopt(gpuSet, id);
    let imageName = lang; // a lang that names no image now (image_prefix or image_allow_list changed) stands for what it named
    try {
      imageName = resolveImage(lang, deps.settings().imagePrefix, deps.settings().imageAllowList);
    } catch (err) {
      deps.log.warn('the lang of a re-adopted kernel names no image under the settings in force', {
        kernelId: id,
        lang,
        error: errorMessage(err),
      });
    }
    const image = await deps.docker.image(imageName).catch(() => ({ labels: {} }));
    const created = Number(labels[LABELS.created]) || Date.now();
    const traits = imageTraits(image.labels);
    kernels.set(id, {
      id,
      containerId: c.id,
      pid: state.pid,
      ports: ports as number[],
      servicePorts: servicePortsOf(traits, state.ports),
      cpuSet,
      scratchDir,
      createdAt: created,
      lastUsed: Date.now(),
      state: 'running',
      busy: null,
      traits,
      adopted: true,
      homeMemMiB,
      spec: {
        lang,
        image: imageName,
        cpuCount: cpuSet.length,
        memMiB: Number(labels[LABELS.memMiB]) || 0,
        shmMiB: Number(labels[LABELS.shmMiB]) || null, // a restart keeps it; none on containers made before the label
        gpuCount: gpuSet.length,
        mounts: vfoldersOf(state.binds),
        environ: environOf(labels, state.env),
        cpuSet,
        gpuSet,
        cluster:
          labels[LABELS.clusterNetwork] && labels[LABELS.clusterHostname]
            ? {
                network: labels[LABELS.clusterNetwork],
                hostname: labels[LABELS.clusterHostname],
                overlay: labels[LABELS.clusterOverlay] === '1',
              }
            : null,
      },
    });
  }
  await homesOf(deps).sweep(new Set(kernels.keys())); // mounts and hostfiles of kernels that are gone, before the folders
  for (const name of await fs.readdir(deps.scratchRoot).catch(() => [] as string[])) {
    const dir = path.join(deps.scratchRoot, name);
    if (kernels.has(name)) continue;
    // Any `.config` marks a home (lstat: a kernel may have made it a link); the removal never follows links.
    if (
      !(await fs.lstat(path.join(dir, '.config')).then(
        () => true,
        () => false,
      ))
    )
      continue;
    await removeTree(dir);
    // A create, restart or destroy cut short by a crash left it: the kernel is gone, and the manager hears so.
    reports.push([name, 'self-terminated', null]);
    deps.log.info('removed a scratch home that belongs to no kernel; reported the kernel terminated', { dir });
  }
  deps.log.info('re-adopted kernels', { running: kernels.size, reportedDead: reports.length });
}

/**
 * The environ of a re-adopted kernel: the names its label lists, with their values in the container's environment
 * (set by the agent, never by the kernel); empty for a claimed pooled container or one made before the label.
 */
function environOf(labels: Record<string, string>, env: string[] | undefined): Record<string, string> {
  const names = new Set((labels[LABELS.environKeys] ?? '').split(',').filter(Boolean));
  const environ: Record<string, string> = {};
  for (const entry of env ?? []) {
    const eq = entry.indexOf('=');
    if (eq > 0 && names.has(entry.slice(0, eq))) environ[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return environ;
}

/** The vfolders of a re-adopted kernel, read back from its container's binds (`/home/work/<name>`; docs/kernels.rst, "Files"). */
function vfoldersOf(binds: ContainerState['binds']): KernelSpec['mounts'] {
  return (binds ?? [])
    .filter((b) => path.posix.dirname(b.destination) === CONTAINER_HOME && path.posix.basename(b.destination) !== '')
    .map((b) => ({ name: path.posix.basename(b.destination), hostPath: b.source }));
}
