/**
 * HostPortRange hands out the host ports kernel containers are published on
 * (docs/service-ports.rst, "The host port range"): from `container_port_range`, first-in first-out,
 * a released port not again within `port_reuse_cooldown` seconds, a port
 * another program holds skipped (and tried again later). It keeps which
 * container holds which port; it knows no Docker (src/ports/ranged-docker.ts
 * does the wiring).
 */
import { NoResourcesError, ParametersError } from '../errors.js';

/** The holder of manager-assigned ports (assign_port), as HostPortRange keeps it. */
export const ASSIGNED = 'assign_port';

/** A holder as an error message names it. */
function describeHolder(holder: string): string {
  if (holder.startsWith('creating:')) return 'a container being created';
  return `container ${holder.slice(0, 12)}`;
}

/** The live settings the range follows. */
export interface PortRangeSettings {
  lo: number;
  hi: number;
  cooldownSec: number;
}

/** The figures of the range, for listings and tests. */
export interface PortRangeStats {
  lo: number;
  hi: number;
  size: number;
  /** Held by a container (or a create under way). */
  held: number;
  /** Free and past the cool-down. */
  ready: number;
  /** Free but released less than the cool-down ago. */
  cooling: number;
}

interface FreePort {
  port: number;
  /** When it was released (ms); 0 = never given out. */
  at: number;
}

export class HostPortRange {
  /** Free ports in the range, oldest release first. */
  private free: FreePort[] = [];
  /** Port -> its holder (a container id, or a token while a create is under way). */
  private readonly held = new Map<number, string>();
  private bounds = { lo: 0, hi: -1 };

  constructor(
    private readonly settings: () => PortRangeSettings,
    private readonly now: () => number = Date.now,
  ) {}

  /** Follows a changed range: ports outside it are no longer given out, new ones are first in line. */
  private sync(): PortRangeSettings {
    const s = this.settings();
    if (s.lo === this.bounds.lo && s.hi === this.bounds.hi) return s;
    const inRange = (p: number) => p >= s.lo && p <= s.hi;
    const kept = this.free.filter((f) => inRange(f.port));
    const known = new Set(kept.map((f) => f.port));
    const fresh: FreePort[] = [];
    for (let p = s.lo; p <= s.hi; p++) if (!known.has(p) && !this.held.has(p)) fresh.push({ port: p, at: 0 });
    // Oldest release first; never-used ports (at 0) first of all, lowest port first.
    this.free = [...fresh, ...kept].sort((a, b) => a.at - b.at || (a.at === 0 ? a.port - b.port : 0));
    this.bounds = { lo: s.lo, hi: s.hi };
    return s;
  }

  /**
   * Takes `n` ports for `owner`, skipping those `inUse` says another program
   * holds (they go to the back of the line). Too few: nothing is taken and a
   * NoResourcesError says how many are free and how to widen the range.
   */
  async take(n: number, owner: string, inUse: (port: number) => Promise<boolean> | boolean): Promise<number[]> {
    const s = this.sync();
    const got: FreePort[] = [];
    const skipped: FreePort[] = [];
    const cooled = (f: FreePort) => f.at === 0 || this.now() - f.at >= s.cooldownSec * 1000;
    while (got.length < n && this.free.length > 0 && cooled(this.free[0]!)) {
      const f = this.free.shift()!; // taken out synchronously: a concurrent take cannot get it too
      this.held.set(f.port, owner);
      let busy: boolean;
      try {
        busy = await inUse(f.port);
      } catch {
        busy = true;
      }
      if (busy) {
        this.held.delete(f.port);
        skipped.push({ port: f.port, at: this.now() });
      } else got.push(f);
    }
    this.free.push(...skipped);
    if (got.length === n) return got.map((f) => f.port);
    for (const f of got) this.held.delete(f.port);
    this.free.unshift(...got.filter((f) => f.port >= this.bounds.lo && f.port <= this.bounds.hi)); // back where they were
    const st = this.stats();
    const others = skipped.length ? `, ${skipped.length} held by another program` : '';
    throw new NoResourcesError(
      `not enough free host ports for this kernel: it needs ${n}, the range ${st.lo}-${st.hi} has ${st.ready} free ` +
        `(${st.cooling} cooling down for port_reuse_cooldown=${s.cooldownSec} s${others}, ${st.held} in use); ` +
        'widen container_port_range (etcd config/agent/container_port_range) or lower port_reuse_cooldown',
    );
  }

  /** Gives back every port `owner` holds; each waits out the cool-down before it is given out again. */
  release(owner: string): number[] {
    this.sync();
    const out: number[] = [];
    for (const [port, o] of this.held) if (o === owner) out.push(port);
    const at = this.now();
    for (const port of out) {
      this.held.delete(port);
      if (port >= this.bounds.lo && port <= this.bounds.hi) this.free.push({ port, at });
    }
    return out;
  }

  /**
   * Gives back one port `owner` holds (release_port of a modern manager).
   * Returns false when the port is free already; throws a ParametersError
   * naming the holder when another holds it (a kernel's port is given back by
   * destroying the kernel).
   */
  releaseOne(owner: string, port: number): boolean {
    this.sync();
    const holder = this.held.get(port);
    if (holder === undefined) return false;
    if (holder !== owner) throw new ParametersError(`port ${port} was not given out by assign_port: ${describeHolder(holder)} holds it`);
    this.held.delete(port);
    if (port >= this.bounds.lo && port <= this.bounds.hi) this.free.push({ port, at: this.now() });
    return true;
  }

  /** Moves the ports of one holder to another (a create's token to the container id). */
  transfer(from: string, to: string): void {
    for (const [port, o] of this.held) if (o === from) this.held.set(port, to);
  }

  /** Marks ports as held by `owner` (re-adoption after an agent restart); ports outside the range are kept too, until released. */
  adopt(owner: string, ports: number[]): void {
    this.sync();
    const set = new Set(ports);
    this.free = this.free.filter((f) => !set.has(f.port));
    for (const p of ports) this.held.set(p, owner);
  }

  /** The ports a holder has. */
  portsOf(owner: string): number[] {
    return [...this.held]
      .filter(([, o]) => o === owner)
      .map(([p]) => p)
      .sort((a, b) => a - b);
  }

  stats(): PortRangeStats {
    const s = this.sync();
    const now = this.now();
    const ready = this.free.filter((f) => f.at === 0 || now - f.at >= s.cooldownSec * 1000).length;
    const heldIn = [...this.held.keys()].filter((p) => p >= s.lo && p <= s.hi).length;
    return { lo: s.lo, hi: s.hi, size: s.hi - s.lo + 1, held: heldIn, ready, cooling: this.free.length - ready };
  }
}
