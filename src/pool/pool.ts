/**
 * WarmPool keeps kernel containers created, started and answering before
 * anyone asks for them, so that create_kernel can claim one in milliseconds
 * instead of paying for a Docker create and start. Each pooled container has
 * its own scratch home under `<scratch root>/.pool/<slot>` and its type's
 * memory limit; it starts on every core of the node at a low CPU weight and,
 * once its runner answers, is pinned where a claim would likely put it
 * (src/pool/pinning.ts). It is not bound to a kernel id and holds no cores in
 * the allocator, and it keeps the relay to its runner open. A claim binds it
 * (claim record; then at once the home renamed to `<scratch root>/<kernel
 * id>` — the bind mount follows the directory — with environ.txt, exact cores
 * and memory by a live update unless already pinned so, and the caller's
 * environ statement; src/pool/bind.ts) and it is never handed out again. The pool refills in
 * the background with bounded concurrency (src/pool/fill.ts), sized by `decideSize`, and a
 * hygiene pass (src/pool/hygiene.ts) replaces dead and outdated containers
 * and removes zombies. Idle containers' memory limits are charged to the
 * kernels' memory book (src/pool/charges.ts) and, with `pool/freeze`, they
 * wait paused (src/pool/freeze.ts); re-adoption is src/pool/adopt.ts.
 */
import path from 'node:path';
import { errorMessage } from '../errors.js';
import type { ContainerSummary } from '../adapters/docker.js';
import { containerName } from '../containers/launch.js';
import { shmMiBOf, type KernelSpec } from '../containers/spec.js';
import { ClaimStore, type ClaimRecord } from './claims.js';
import { adoptIdle, claimOf, openRelay, poolKey, splitKey, sweepHomes } from './adopt.js';
import { PoolCharges } from './charges.js';
import { PoolFiller } from './fill.js';
import { bindClaim } from './bind.js';
import { PoolFreezer } from './freeze.js';
import { poolRecipe, runHygiene } from './hygiene.js';
import type { HygieneTarget, PooledContainer, PoolSizes, WarmPoolDeps } from './types.js';
import { fittingType, type PoolType } from './settings.js';
import { decideSize } from './sizing.js';
import { limitsExact } from './pinning.js';
import { PassCounter } from '../util/pass-counter.js';
import { removeTree } from '../scratch/home-ops.js';

export type { PooledContainer, PoolSizes, WarmPoolDeps } from './types.js';

export class WarmPool implements HygieneTarget {
  readonly idle = new Map<string, PooledContainer>();
  /** Claimed (or being claimed) pooled containers: container id -> pool key. */
  readonly claimed = new Map<string, string>();
  readonly claims: ClaimStore;
  /** Idle containers' memory charges (src/pool/charges.ts). */
  readonly charges: PoolCharges;
  readonly freezer: PoolFreezer;
  readonly claimTotals = new Map<string, number>();
  readonly coldTotals = new Map<string, number>();
  /** Called with the seconds each successful creation took (create, start, runner answering). */
  onCreated: ((seconds: number) => void) | null = null;
  /** Times of recent demand per `<lang>/<type>`: claims, and cold creations a configured type would have served. */
  private readonly recentDemand = new Map<string, number[]>();
  private readonly filler = new PoolFiller(this);
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private closed = false;
  /** The node drains (src/services/drain.ts): nothing is created, and every idle container goes at each sizing. */
  private draining = false;
  private readonly passCounter = new PassCounter();

  /** Creations under way: slot -> pool key. */
  get creating(): Map<string, string> {
    return this.filler.creating;
  }

  /** Hygiene and sizing passes finished since the pool was made. */
  get passes(): number {
    return this.passCounter.count;
  }

  /**
   * Resolves once `n` more passes than now have finished, so that a test or a
   * tool waits for the pool's own work instead of for time; resolves at
   * {@link close} too (no more passes will come).
   */
  afterPasses(n: number): Promise<void> {
    return this.passCounter.after(n);
  }

  /** Whether {@link close} was called (fills under way then leave their container for the next start). */
  get isClosed(): boolean {
    return this.closed;
  }

  constructor(readonly deps: WarmPoolDeps) {
    this.claims = new ClaimStore(deps.scratchRoot);
    this.charges = new PoolCharges(() => deps.memory?.() ?? null, deps.log);
    this.freezer = new PoolFreezer(deps.docker, deps.log, () => deps.settings().freeze);
  }

  /**
   * Takes the idle container that best fits a spec out of the pool
   * (synchronously), or returns null: the smallest type that holds it, and
   * in it one already pinned to exactly `cpuSet` and the spec's memory if any.
   * Its memory charge becomes kernel `kernelId`'s (the spec's memory).
   */
  take(spec: KernelSpec, cpuSet: number[], kernelId: string): PooledContainer | null {
    const s = this.deps.settings();
    if (this.closed || Object.keys(s.images).length === 0) return null; // no pool: not a fallback either
    const kernelSettings = this.deps.kernelSettings();
    // Mounts, devices and /dev/shm's size cannot be changed live: a GPU kernel takes a type with exactly its count, a gpu_set (a restart)
    // is never pooled, and pooled containers, made with kernel_shm_size, serve kernels that ask for that size or less (the size is only
    // a ceiling: /dev/shm's pages are charged to the kernel's memory cgroup whatever it is).
    const servable =
      spec.mounts.length === 0 &&
      (spec.gpuSet?.length ?? 0) === 0 &&
      shmMiBOf(spec, kernelSettings.kernelShmMiB) <= kernelSettings.kernelShmMiB;
    // A container made with other kernel settings than today's is never handed out; hygiene replaces it.
    const recipe = poolRecipe(kernelSettings);
    const usable = [...this.idle.values()].filter(
      (c) => c.lang === spec.lang && c.image === spec.image && c.recipe === recipe && !c.checking,
    );
    const types = s.types.filter((t) => usable.some((c) => c.type === t.name));
    let type: PoolType | null;
    while (servable && (type = fittingType(types, spec.cpuCount, spec.memMiB, spec.gpuCount))) {
      const fits = usable.filter((e) => e.type === type!.name);
      const c = fits.find((e) => limitsExact(e.limits, cpuSet, spec.memMiB)) ?? fits[0];
      if (c && this.charges.transfer(c.slot, kernelId, spec.memMiB)) {
        this.idle.delete(c.containerId);
        this.claimed.set(c.containerId, c.key);
        return c;
      }
      types.splice(types.indexOf(type), 1);
    }
    this.coldTotals.set(spec.lang, (this.coldTotals.get(spec.lang) ?? 0) + 1);
    // Demand the pool could have served had it been bigger: the autoscaler counts it like a claim.
    const wanted =
      servable && s.images[spec.lang]
        ? fittingType(
            s.types.filter((t) => t.name in s.images[spec.lang]!),
            spec.cpuCount,
            spec.memMiB,
            spec.gpuCount,
          )
        : null;
    if (wanted) this.noteDemand(poolKey(spec.lang, wanted.name));
    return null;
  }

  /**
   * Binds a taken container to a kernel (src/pool/bind.ts): the claim record,
   * then the home, exact cores and memory, and `alongside` (the caller's work
   * on the running runner); on failure the container is removed and the first
   * error thrown.
   */
  async bind(
    c: PooledContainer,
    kernelId: string,
    spec: KernelSpec,
    cpuSet: number[],
    alongside: () => Promise<void>,
  ): Promise<{ scratchDir: string }> {
    return bindClaim(this, c, kernelId, spec, cpuSet, alongside);
  }

  /** The home a claim gives kernel `kernelId`. */
  homeOf(kernelId: string): string {
    return path.join(this.deps.scratchRoot, kernelId);
  }

  /**
   * Gives a claimed container its kernel's name, after the claim was
   * answered (the name is for people reading `docker ps`; nothing looks
   * containers up by it). Never rejects: a container destroyed meanwhile
   * keeps no name to fix.
   */
  async nameAsKernel(containerId: string, lang: string, kernelId: string): Promise<void> {
    await this.deps.docker
      .rename(containerId, containerName(lang, kernelId))
      .catch((err: unknown) =>
        this.deps.log.warn('could not rename the claimed container; it keeps its pool name', { kernelId, error: errorMessage(err) }),
      );
  }

  /** Counts a demand of a pool key now (claims, and cold creations a configured type would have served), for the autoscaler. */
  noteDemand(key: string): void {
    this.recentDemand.set(key, [...(this.recentDemand.get(key) ?? []), Date.now()]);
  }

  /** Removes a claimed container that could not become a kernel, with its home and claim record. */
  async discard(containerId: string, dirs: string[]): Promise<void> {
    await this.deps.docker
      .remove(containerId)
      .catch((e: unknown) => this.deps.log.error('could not remove a pooled container', { error: errorMessage(e) }));
    await this.claims.remove(containerId).catch((e: unknown) =>
      this.deps.log.warn('could not remove the claim record of a discarded pooled container', {
        container: containerId.slice(0, 12),
        error: errorMessage(e),
      }),
    );
    for (const d of dirs)
      await removeTree(d).catch((e: unknown) =>
        this.deps.log.warn('could not remove a directory of a discarded pooled container', {
          container: containerId.slice(0, 12),
          dir: d,
          error: errorMessage(e),
        }),
      );
    this.claimed.delete(containerId);
  }

  /** The claim record of a pooled container found at start (it is then a kernel), or null (it is idle). */
  claimOf(c: ContainerSummary): Promise<ClaimRecord | null> {
    return claimOf(this, c);
  }

  /** Takes back an idle pooled container found at start (src/pool/adopt.ts). */
  adoptIdle(c: ContainerSummary): Promise<void> {
    return adoptIdle(this, c);
  }

  /** Removes the pooled homes that no idle container holds; call after re-adoption. */
  sweepHomes(): Promise<void> {
    return sweepHomes(this);
  }

  /** A claimed container's kernel is gone: forget it and its claim record. */
  async released(containerId: string): Promise<void> {
    if (!this.claimed.delete(containerId)) return;
    await this.claims.remove(containerId).catch((e: unknown) =>
      this.deps.log.warn('could not remove the claim record of a released pooled container', {
        container: containerId.slice(0, 12),
        error: errorMessage(e),
      }),
    );
  }

  /** An idle container died (Docker's events): replace it now rather than at the next check. */
  died(containerId: string): void {
    const c = this.idle.get(containerId);
    if (c) void this.drop(c, 'the container died').then(() => this.resize());
  }

  /** Removes an idle container and its home. */
  async drop(c: PooledContainer, reason: string): Promise<void> {
    if (!this.idle.delete(c.containerId)) return;
    c.relay?.close();
    this.deps.gpus?.release(c.gpuSet);
    this.charges.release(c.slot);
    this.deps.log.info('removing a pooled container', { container: c.containerId.slice(0, 12), pool: c.key, reason });
    await this.deps.docker
      .remove(c.containerId)
      .catch((e: unknown) => this.deps.log.warn('could not remove a pooled container', { error: errorMessage(e) }));
    await removeTree(c.home).catch((e: unknown) =>
      this.deps.log.warn('could not remove the home of a pooled container', {
        container: c.containerId.slice(0, 12),
        dir: c.home,
        error: errorMessage(e),
      }),
    );
  }

  /** Starts the periodic hygiene and sizing pass. */
  start(): void {
    const loop = () => {
      this.ticking = this.tick().finally(() => {
        this.ticking = null;
        if (!this.closed) this.timer = setTimeout(loop, this.deps.settings().checkIntervalSec * 1000);
      });
    };
    loop();
  }

  /** The node drains (true) or takes kernels again (false): the pool empties, or refills to its targets, now. */
  setDraining(on: boolean): void {
    this.draining = on;
    this.resize();
  }

  /** A settings change: size again now. */
  reconfigured(): void {
    this.resize();
  }

  /** Stops the background work; warm containers stay for the next start to take back. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.ticking;
    this.passCounter.close();
    for (const c of this.idle.values()) c.relay?.close();
  }

  /** One pass: hygiene, the idle containers paused or unpaused as `pool/freeze` says, then sizing. */
  async tick(): Promise<void> {
    try {
      await runHygiene(this);
      await this.freezer.settle(this.idle.values(), (c, why) => this.drop(c, why));
    } catch (err) {
      this.deps.log.warn('pool check failed; trying again at the next one', { error: errorMessage(err) });
    }
    this.resize();
    this.passCounter.passed();
  }

  /** Counts per image and type. */
  sizes(): PoolSizes[] {
    const rows = new Map<string, PoolSizes>();
    const row = (key: string) => {
      let r = rows.get(key);
      if (!r) rows.set(key, (r = { ...splitKey(key), idle: 0, creating: 0, claimed: 0, frozen: 0 }));
      return r;
    };
    for (const [lang, counts] of Object.entries(this.deps.settings().images)) for (const t of Object.keys(counts)) row(poolKey(lang, t));
    for (const c of this.idle.values()) {
      row(c.key).idle++;
      if (c.frozen) row(c.key).frozen++;
    }
    for (const k of this.creating.values()) row(k).creating++;
    for (const k of this.claimed.values()) if (k) row(k).claimed++;
    return [...rows.values()];
  }

  /** Brings every image and type towards its target; creations beyond fill_concurrency wait for a free place. */
  resize(): void {
    if (this.closed) return;
    if (this.draining) {
      for (const c of [...this.idle.values()]) void this.drop(c, 'the node drains');
      return;
    }
    const s = this.deps.settings();
    const now = Date.now();
    const keys = new Set<string>([...this.idle.values()].map((c) => c.key).concat([...this.creating.values()]));
    const typeNames = new Set(s.types.map((t) => t.name));
    for (const [lang, counts] of Object.entries(s.images)) for (const t of Object.keys(counts)) keys.add(poolKey(lang, t));
    const shares = this.deps.clusterShare?.() ?? {};
    for (const [lang, counts] of Object.entries(shares)) for (const t of Object.keys(counts)) keys.add(poolKey(lang, t));
    for (const key of keys) {
      const { lang, type } = splitKey(key);
      const floor = typeNames.has(type) ? (s.images[lang]?.[type] ?? 0) : 0;
      const recent = (this.recentDemand.get(key) ?? []).filter((t) => now - t < s.autoscaleWindowSec * 1000);
      this.recentDemand.set(key, recent);
      const idle = [...this.idle.values()].filter((c) => c.key === key);
      const creating = [...this.creating.values()].filter((k) => k === key).length;
      const input = {
        floor,
        max: s.max,
        autoscale: s.autoscale,
        recentDemand: recent.length,
        clusterShare: shares[lang]?.[type] ?? 0,
        creating,
        idle: idle.map((c) => ({ id: c.containerId, idleSinceMs: c.idleSince })),
        nowMs: now,
        maxIdleSec: s.maxIdleSec,
      };
      const d = decideSize(input);
      const blocked = this.filler.blocked(key, now);
      const room = Math.max(0, s.fillConcurrency - this.creating.size);
      const t = s.types.find((x) => x.name === type);
      const fits = t ? this.charges.room(t.memMiB) : 0; // kernels' and pooled limits stay within the schedulable memory
      if (t && !blocked) this.charges.note(key, Math.min(d.create, room), fits, t.memMiB);
      const start = blocked || !t ? 0 : Math.min(d.create, room, this.gpuRoom(t), fits);
      if (start === 0 && d.remove.length === 0) continue;
      this.deps.log.info('pool sizing', {
        pool: key,
        floor,
        max: s.max,
        autoscale: s.autoscale,
        recentDemand: recent.length,
        clusterShare: input.clusterShare,
        idle: idle.length,
        creating,
        target: d.target,
        creatingNow: start,
        waiting: d.create - start,
        removing: d.remove.length,
      });
      for (const id of d.remove) void this.drop(this.idle.get(id)!, 'above the target');
      for (let i = 0; i < start; i++) void this.filler.fill(lang, t!);
    }
  }

  /**
   * How many containers of a type the node's free GPUs allow now (no limit
   * for types without GPUs): a CPU node, or one whose devices kernels hold,
   * does not try (and warn) at every pass; a pass after a release does.
   */
  private gpuRoom(type: PoolType | undefined): number {
    const gpus = this.deps.gpus;
    if (!type?.gpu) return Infinity;
    return gpus && gpus.slots > 0 ? Math.floor(gpus.books.free / type.gpu) : 0;
  }

  /** Readiness of an idle container: its runner answers `status` within the timeout, through its kept relay; a frozen one is unpaused for it and paused again. */
  async check(c: PooledContainer, timeoutMs: number): Promise<void> {
    await this.freezer.thaw(c);
    c.relay ??= openRelay(this.deps, c.ports);
    await c.relay.ready(timeoutMs);
    await this.freezer.freeze(c);
  }
}
