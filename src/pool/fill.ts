/**
 * The fills of the warm pool: one pooled container created (its memory
 * charged first, src/pool/charges.ts), started, its runner answering
 * `status`, pinned where a claim would likely put it (src/pool/pinning.ts),
 * paused when `pool/freeze` is on, then handed to the pool; a failure
 * removes what it made and backs the pool's image and type off (doubling,
 * up to a minute).
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../errors.js';
import { Backoff, type BackoffPolicy } from '../util/backoff.js';
import { KERNEL_PORTS, type DockerEngine } from '../adapters/docker.js';
import { containerRequest, lastLines, prepareScratch } from '../containers/launch.js';
import { imageTraits } from '../containers/image-traits.js';
import { refuseMusl, refuseUnservable } from '../containers/runner-env.js';
import { refuseBadServiceLabel } from '../containers/service-ports.js';
import { takeGpus } from '../accelerators/kernel-gpus.js';
import { prepareHome } from '../containers/workspace.js';
import type { KernelSpec } from '../containers/spec.js';
import { resolveImage } from '../config/lang.js';
import type { KernelRelay } from '../relay/kernel-relay.js';
import { openRelay, poolKey } from './adopt.js';
import type { PoolCharges } from './charges.js';
import type { PoolFreezer } from './freeze.js';
import { poolRecipe } from './hygiene.js';
import { pinCores } from './pinning.js';
import type { PoolType } from './settings.js';
import type { PooledContainer, WarmPoolDeps } from './types.js';

/** Gives a container exactly these cores and memory (swap off) at a kernel's CPU weight, by a live update. */
export function setLimits(docker: DockerEngine, containerId: string, cpuSet: number[], memMiB: number): Promise<void> {
  return docker.update(containerId, { cpusetCpus: cpuSet.join(','), memoryBytes: memMiB * 1024 * 1024, cpuShares: 1024 });
}

/** What a fill needs of the pool. */
export interface FillTarget {
  readonly deps: WarmPoolDeps;
  readonly idle: Map<string, PooledContainer>;
  readonly charges: PoolCharges;
  readonly freezer: PoolFreezer;
  readonly isClosed: boolean;
  onCreated: ((seconds: number) => void) | null;
  /** Sizes again (after each fill). */
  resize(): void;
}

/** The wait of a pool key's fills after failures: 2 s doubling to a minute; a fill that works resets it. */
const FILL_BACKOFF: BackoffPolicy = { baseMs: 2000, maxMs: 60_000, jitter: 0 };

export class PoolFiller {
  /** Creations under way: slot -> pool key. */
  readonly creating = new Map<string, string>();
  private readonly backoff = new Map<string, { until: number; delays: Backoff }>();
  /** Pins chosen for containers still being created: slot -> pool key and cores. */
  private readonly pinning = new Map<string, { key: string; cpuSet: number[] }>();

  constructor(private readonly pool: FillTarget) {}

  /** Whether fills of `key` wait out a back-off after a failure. */
  blocked(key: string, now: number): boolean {
    return (this.backoff.get(key)?.until ?? 0) > now;
  }

  /** Creates one pooled container and waits for its runner to answer. */
  async fill(lang: string, type: PoolType): Promise<void> {
    const key = poolKey(lang, type.name);
    const slot = randomBytes(6).toString('hex');
    const home = path.join(this.pool.deps.scratchRoot, '.pool', slot);
    const settings = this.pool.deps.kernelSettings();
    const { kernelUid, security, publishAddr } = settings;
    const recipe = poolRecipe(settings);
    if (!this.pool.charges.take(slot, type.memMiB)) return; // another charge took the room since the pass looked
    this.creating.set(slot, key);
    const t0 = performance.now();
    let containerId = '';
    let relay: KernelRelay | null = null;
    let gpuSet: number[] = [];
    try {
      const imageName = resolveImage(lang, settings.imagePrefix, settings.imageAllowList);
      await this.pool.deps.ensureImage?.(imageName);
      const image = await this.pool.deps.docker.image(imageName);
      const traits = imageTraits(image.labels);
      refuseBadServiceLabel(traits, imageName); // a bad service-port label makes no pooled container
      refuseUnservable(traits.runner, imageName, settings.runnerEnv, settings.runnerEnvProblem);
      const spec: KernelSpec = {
        lang,
        image: imageName,
        cpuCount: this.pool.deps.allCores.length,
        memMiB: type.memMiB,
        gpuCount: type.gpu,
        mounts: [],
        environ: {},
        cpuSet: null,
        gpuSet: null,
      };
      gpuSet = takeGpus(this.pool.deps.gpus, `pool:${slot}`, spec, traits)?.gpuSet ?? []; // held while idle
      spec.gpuSet = gpuSet.length ? gpuSet : null;
      await prepareHome(home, {}, settings); // the workspace template, as a cold create's home gets it
      await prepareScratch(home, {}, kernelUid);
      containerId = await this.pool.deps.docker.create(
        containerRequest({
          agentId: this.pool.deps.agentId,
          kernelId: '',
          spec,
          cpuSet: this.pool.deps.allCores,
          traits,
          scratchDir: home,
          kernelUid,
          publishHost: publishAddr || this.pool.deps.kernelHost,
          security,
          shmMiB: settings.kernelShmMiB,
          createdAt: Date.now(),
          pool: { key, slot, recipe },
          gpu: this.pool.deps.gpus?.hostConfig(gpuSet, this.pool.deps.allCores),
          runnerEnv: settings.runnerEnv,
        }),
      );
      if (!traits.runner.baked) await refuseMusl(imageName, (p) => this.pool.deps.docker.pathExists(containerId, p));
      await this.pool.deps.docker.start(containerId);
      const state = await this.pool.deps.docker.inspect(containerId);
      const ports = KERNEL_PORTS.map((p) => state?.ports[p]);
      if (!state?.running || ports.some((p) => !p))
        throw new Error('the container stopped right after it started; docker logs has its output');
      relay = openRelay(this.pool.deps, ports as number[]);
      await relay.ready(30_000);
      // Started at a low weight on every core (its start yields to kernels); it waits where a claim would put it.
      const pins = [...this.pool.idle.values()].filter((c) => c.key === key && c.limits).map((c) => c.limits!.cpuSet);
      for (const p of this.pinning.values()) if (p.key === key) pins.push(p.cpuSet);
      const limits = {
        cpuSet: pinCores(this.pool.deps.allCores, Math.ceil(type.cpu), this.pool.deps.coreLoad?.() ?? new Map(), pins),
        memMiB: type.memMiB,
      };
      this.pinning.set(slot, { key, cpuSet: limits.cpuSet });
      await setLimits(this.pool.deps.docker, containerId, limits.cpuSet, limits.memMiB);
      const pooled: PooledContainer = {
        containerId,
        key,
        lang,
        type: type.name,
        image: imageName,
        imageId: image.id,
        recipe,
        slot,
        home,
        pid: state.pid,
        ports: ports as number[],
        traits,
        gpuSet,
        idleSince: Date.now(),
        checkedAt: Date.now(),
        checking: false,
        frozen: false,
        memMiB: type.memMiB,
        limits,
        relay,
      };
      await this.pool.freezer.freeze(pooled); // pool/freeze: it waits paused from now on
      if (this.pool.isClosed) {
        relay.close();
        this.pool.deps.gpus?.release(gpuSet); // the next start takes it back, with its devices
        this.pool.charges.release(slot);
        return;
      }
      this.pool.idle.set(containerId, pooled);
      this.backoff.delete(key);
      this.pool.onCreated?.((performance.now() - t0) / 1000);
      this.pool.deps.log.debug('pooled container ready', {
        pool: key,
        container: containerId.slice(0, 12),
        ms: Math.round(performance.now() - t0),
      });
    } catch (err) {
      const entry = this.backoff.get(key) ?? { until: 0, delays: new Backoff(FILL_BACKOFF) };
      const delayMs = entry.delays.next();
      entry.until = Date.now() + delayMs;
      this.backoff.set(key, entry);
      // What the container printed says why its runner did not come up (read before the container is removed).
      const printed = containerId ? await lastLines(this.pool.deps.docker, containerId) : undefined;
      this.pool.deps.log.warn('could not create a pooled container; trying again later', {
        pool: key,
        retryInMs: delayMs,
        error: errorMessage(err),
        printed,
      });
      relay?.close();
      this.pool.deps.gpus?.release(gpuSet);
      this.pool.charges.release(slot);
      const log = this.pool.deps.log;
      if (containerId)
        await this.pool.deps.docker.remove(containerId).catch((e: unknown) =>
          log.warn('could not remove a pooled container that did not come up', {
            container: containerId.slice(0, 12),
            error: errorMessage(e),
          }),
        );
      await fs
        .rm(home, { recursive: true, force: true })
        .catch((e: unknown) =>
          log.warn('could not remove the home of a pooled container that did not come up', { dir: home, error: errorMessage(e) }),
        );
    } finally {
      this.creating.delete(slot);
      this.pinning.delete(slot);
      this.pool.resize();
    }
  }
}
