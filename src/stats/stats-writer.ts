/**
 * StatsWriter writes the kernels' stats to the managers' Redis every
 * `stats_interval` (docs/wire-contract.rst, "Stats in Redis"): for 2018
 * managers `HMSET <kernel id>` + `EXPIRE` into the Redis of `nodes/redis`
 * (and once more at destroy, before kernel_terminated goes out), for modern
 * managers `SET <kernel id>` of the metric map and `SET <agent id>` of the
 * node map into the Redis of `config/redis`. Each kernel is read on its
 * own, with its own timeout: a read that does not finish in time leaves
 * that kernel's figures unknown for the round (a read still running is not
 * started again), and the other kernels' stats go out regardless.
 */
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import type { Codec } from '../wire/codec.js';
import { RedisWriter, type RedisWriterStats } from './redis-writer.js';
import { legacyHash, ModernForms, type Figures, type NodeFiguresIn } from './forms.js';

/** One kernel as the writer sees it. */
export interface StatsSource {
  id: string;
  /** Which manager's Redis its stats go to: the one that created it. */
  generation: 'legacy' | 'modern';
  /** The kernel's memory limit in bytes (the modern `mem` metric's capacity). */
  memLimitBytes: number | null;
  /** Reads its figures now; a figure that cannot be read is null. */
  read(): Promise<Figures>;
}

/** What the writer needs. */
export interface StatsWriterDeps {
  agentId: string;
  log: Logger;
  codec: Codec;
  /** The kernels to write, now. */
  sources(): StatsSource[];
  /** The node's figures for the modern node map; null when they could not be read. */
  node(): Promise<NodeFiguresIn | null>;
  intervalSec(): number;
  readTimeoutSec(): number;
  expirySec(): number;
}

/** How long the modern node map lives after its last write (the modern agent's cache lifespan). */
const NODE_KEY_LIFESPAN_SEC = 120;

/** What one round did, for tests and the bench. */
export interface StatsRound {
  kernels: number;
  /** Kernels whose read did not finish in time (or was still running from an earlier round). */
  unknown: number;
}

export class StatsWriter {
  /** The 2018 managers' Redis (`nodes/redis`). */
  readonly legacy: RedisWriter;
  /** The modern managers' Redis (`config/redis`). */
  readonly modern: RedisWriter;
  private readonly forms = new ModernForms();
  /** The 2018 hash fields already written, by kernel. */
  private readonly written = new Map<string, Set<string>>();
  /** Reads still running, by kernel id: such a kernel is not read again until it ends. */
  private readonly reading = new Map<string, Promise<unknown>>();
  /** Kernels whose final stats were written: no periodic round writes them again. */
  private readonly finished = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private round: Promise<StatsRound> | null = null;
  private closed = false;
  private lastRound: StatsRound = { kernels: 0, unknown: 0 };
  /** Rounds done and kernels found unknown in them, since the start. */
  private readonly totals = { rounds: 0, unknown: 0 };

  constructor(private readonly deps: StatsWriterDeps) {
    this.legacy = new RedisWriter(deps.log, 'nodes/redis (2018 managers)');
    this.modern = new RedisWriter(deps.log, 'config/redis (modern managers)');
  }

  /** Starts the periodic rounds (re-reading the interval after each, so a change applies at the next round). */
  start(): void {
    this.schedule();
  }

  /** Counters of both Redis connections, the last round and the totals of all rounds. */
  snapshot(): {
    legacy: RedisWriterStats;
    modern: RedisWriterStats;
    lastRound: StatsRound;
    totals: { rounds: number; unknown: number };
  } {
    return { legacy: this.legacy.snapshot(), modern: this.modern.snapshot(), lastRound: { ...this.lastRound }, totals: { ...this.totals } };
  }

  /** One round now (a round under way is joined, not doubled). */
  writeNow(): Promise<StatsRound> {
    this.round ??= this.doRound().finally(() => (this.round = null));
    return this.round;
  }

  /**
   * The 2018 agent's write at destroy: the kernel's last stats into its hash
   * before kernel_terminated goes out (the manager reads the hash when that
   * event arrives). Bounded by the read timeout; never rejects. Null when
   * there is nothing to write (no stats, no 2018 Redis): the event need not wait.
   */
  final(id: string, stats: Partial<Figures> | null): Promise<void> | null {
    this.finished.add(id);
    this.forms.keepOnly(new Set(this.deps.sources().map((s) => s.id)));
    const written = this.written.get(id) ?? new Set<string>();
    this.written.delete(id);
    if (!stats || !this.legacy.addr) return null;
    return this.writeFinal(id, stats, written);
  }

  private async writeFinal(id: string, stats: Partial<Figures>, written: Set<string>): Promise<void> {
    const figures = Object.fromEntries(Object.entries(stats).map(([k, v]) => [k, typeof v === 'number' ? v : null])) as Figures;
    const fields = legacyHash(figures, written);
    const expiry = this.deps.expirySec();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.legacy.write((p) => (Object.keys(fields).length === 0 ? 0 : (p.hmset(id, fields).expire(id, expiry), 2))),
      new Promise((r) => (timer = setTimeout(r, this.deps.readTimeoutSec() * 1000))),
    ]).finally(() => clearTimeout(timer));
  }

  /** Stops the rounds, waits for one under way, and disconnects. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.round?.catch(() => undefined); // its failures were logged where they happened
    this.legacy.close();
    this.modern.close();
  }

  private schedule(): void {
    if (this.closed) return;
    const sec = this.deps.intervalSec();
    this.timer = setTimeout(
      () => {
        this.timer = null;
        if (this.deps.intervalSec() === 0) return this.schedule();
        this.writeNow()
          .catch((err: unknown) => this.deps.log.error('a stats round failed', { error: errorMessage(err) }))
          .finally(() => this.schedule());
      },
      (sec > 0 ? sec : 5) * 1000, // with stats off, look again in 5 s whether they were turned on
    );
    this.timer.unref();
  }

  private async doRound(): Promise<StatsRound> {
    // While a Redis is known but down, its kernels are not even read: the outage costs the stats and nothing else.
    const legacyOn = this.legacy.ready;
    const modernOn = this.modern.ready;
    if (!legacyOn && this.legacy.addr !== null) this.legacy.dropRound();
    if (!modernOn && this.modern.addr !== null) this.modern.dropRound();
    const all = this.deps.sources();
    const live = new Set(all.map((s) => s.id));
    for (const id of this.finished) if (!live.has(id)) this.finished.delete(id);
    for (const id of this.written.keys()) if (!live.has(id)) this.written.delete(id);
    this.forms.keepOnly(live);
    const sources = all.filter((s) => !this.finished.has(s.id) && (s.generation === 'legacy' ? legacyOn : modernOn));
    const timeoutMs = this.deps.readTimeoutSec() * 1000;
    const figures = await Promise.all(sources.map((s) => this.readOne(s, timeoutMs)));
    const at = performance.now() / 1000;
    const expiry = this.deps.expirySec();
    const legacyRound: Array<[string, Record<string, string>]> = [];
    const modernRound: Array<[string, Buffer]> = [];
    sources.forEach((s, i) => {
      const f = figures[i]!;
      if (this.finished.has(s.id)) return; // destroyed while it was read: its final stats are in
      if (s.generation === 'legacy') {
        if (!f) return; // unknown: the hash keeps its last figures, until they expire
        let w = this.written.get(s.id);
        if (!w) this.written.set(s.id, (w = new Set()));
        const fields = legacyHash(f, w);
        if (Object.keys(fields).length > 0) legacyRound.push([s.id, fields]);
      } else {
        modernRound.push([s.id, this.deps.codec.encode(this.forms.kernel(s.id, f, s.memLimitBytes, at))]);
      }
    });
    const node = modernOn ? await this.deps.node().catch(() => null) : null;
    await Promise.all([
      legacyRound.length === 0
        ? Promise.resolve(true)
        : this.legacy.write((p) => {
            for (const [id, fields] of legacyRound) p.hmset(id, fields).expire(id, expiry); // HMSET: 2018's Redis (3.x) has no multi-field HSET
            return legacyRound.length * 2;
          }),
      !modernOn
        ? Promise.resolve(true)
        : this.modern.write((p) => {
            for (const [id, packed] of modernRound) p.set(id, packed, 'EX', expiry);
            if (node) p.set(this.deps.agentId, this.deps.codec.encode(this.forms.nodeMap(node, at)), 'EX', NODE_KEY_LIFESPAN_SEC);
            return modernRound.length + (node ? 1 : 0);
          }),
    ]);
    this.lastRound = { kernels: sources.length, unknown: figures.filter((f) => f === null).length };
    this.totals.rounds++;
    this.totals.unknown += this.lastRound.unknown;
    return this.lastRound;
  }

  /** One kernel's figures within the timeout, or null (unknown); a read still running from before is not started again. */
  private readOne(s: StatsSource, timeoutMs: number): Promise<Figures | null> {
    if (this.reading.has(s.id)) return Promise.resolve(null);
    const read = s.read().catch((err: unknown) => {
      this.deps.log.debug('could not read kernel stats', { kernelId: s.id, error: errorMessage(err) });
      return null;
    });
    const tracked = read.finally(() => this.reading.delete(s.id));
    this.reading.set(s.id, tracked);
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([read, new Promise<null>((r) => (timer = setTimeout(() => r(null), timeoutMs)))]).finally(() =>
      clearTimeout(timer),
    );
  }
}
