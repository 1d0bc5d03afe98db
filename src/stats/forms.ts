/**
 * The forms in which the kernels' stats go to the managers' Redis
 * (docs/wire-contract.rst, "Stats in Redis"): the 2018 manager's hash
 * (`HMSET <kernel id>` with the per-kernel fields of the events) and the
 * modern manager's metric maps (msgpack of `{metric: {current, capacity,
 * pct, unit_hint, stats.*}}` under `<kernel id>`, and `{node, devices}`
 * under the agent id), with the moving statistics the modern agent keeps.
 * A figure that could not be read is left out of a hash and written as
 * `NaN` in a metric map: unknown, never 0.
 */

/** The per-kernel figures (docs/wire-contract.rst, "Events"), each null when it could not be read. */
export const FIGURE_KEYS = [
  'cpu_used',
  'mem_max_bytes',
  'mem_cur_bytes',
  'net_rx_bytes',
  'net_tx_bytes',
  'io_read_bytes',
  'io_write_bytes',
  'io_max_scratch_size',
  'io_cur_scratch_size',
] as const;

/** One sample of a kernel: each figure, or null where it is unknown. */
export type Figures = Record<(typeof FIGURE_KEYS)[number], number | null>;

/**
 * The fields the 2018 manager reads together once `cpu_used` is in the hash
 * (it fails on a missing one): `cpu_used` is written only once these are
 * there, now or from an earlier round.
 */
const BILLED: ReadonlyArray<keyof Figures> = [
  'mem_max_bytes',
  'net_rx_bytes',
  'net_tx_bytes',
  'io_read_bytes',
  'io_write_bytes',
  'io_max_scratch_size',
];

/**
 * The fields of one `HMSET <kernel id>` for the 2018 manager: every known
 * figure as a decimal string; `written` (the fields already in the hash)
 * is updated. Empty when nothing is known.
 */
export function legacyHash(f: Figures, written: Set<string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of FIGURE_KEYS) {
    const v = f[k];
    if (v === null || k === 'cpu_used') continue;
    out[k] = String(Math.round(v));
  }
  if (f.cpu_used !== null && BILLED.every((k) => k in out || written.has(k))) out.cpu_used = String(Math.round(f.cpu_used));
  for (const k of Object.keys(out)) written.add(k);
  return out;
}

/** A number as the modern agent writes it: at most `places` decimals, no trailing zeros. */
function dec(n: number, places = 3): string {
  if (!Number.isFinite(n)) return 'NaN';
  const s = n.toFixed(places);
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/** What the modern agent's moving statistics of a metric hold: sum, count, extremes and the last two (value, time) points. */
class Moving {
  sum = 0;
  count = 0;
  min = Infinity;
  max = -Infinity;
  last: Array<[number, number]> = [];

  update(v: number, at: number): void {
    this.sum += v;
    this.count++;
    this.min = Math.min(this.min, v);
    this.max = Math.max(this.max, v);
    this.last.push([v, at]);
    if (this.last.length > 2) this.last.shift();
  }

  get diff(): number {
    return this.last.length === 2 ? this.last[1]![0] - this.last[0]![0] : 0;
  }

  get rate(): number {
    if (this.last.length !== 2) return 0;
    const dt = this.last[1]![1] - this.last[0]![1];
    return dt > 0 ? this.diff / dt : 0;
  }

  stat(name: StatName): number {
    if (name === 'avg') return this.sum / this.count;
    return name === 'min' ? this.min : name === 'max' ? this.max : name === 'sum' ? this.sum : name === 'diff' ? this.diff : this.rate;
  }
}

type StatName = 'min' | 'max' | 'sum' | 'avg' | 'diff' | 'rate';

/** The declaration of one modern metric: where its value comes from and how it reads (the modern agent's docker intrinsic plugin). */
interface MetricDef {
  key: string;
  unit: string;
  stats: readonly StatName[];
  /** `value`: the figure as it is; `rate`: its change per second. */
  current: 'value' | 'rate';
  /** A fixed capacity; absent, the first value is the capacity, as the modern agent does. */
  capacity?: number;
}

/** A modern metric map's entry. */
export type ModernMetric = Record<string, string | null>;

/** The metrics of one source (a kernel, or the node) and their moving statistics. */
class MetricSet {
  private readonly moving = new Map<string, Moving>();
  private readonly capacity = new Map<string, number>();

  serialize(defs: readonly MetricDef[], values: Record<string, number | null>, capacities: Record<string, number | null>, at: number) {
    const out: Record<string, ModernMetric> = {};
    for (const d of defs) {
      const v = values[d.key] ?? null;
      let m = this.moving.get(d.key);
      const cap = capacities[d.key] ?? d.capacity ?? this.capacity.get(d.key) ?? v;
      if (cap !== null && cap !== undefined) this.capacity.set(d.key, cap);
      if (v !== null) {
        if (!m) this.moving.set(d.key, (m = new Moving()));
        m.update(v, at);
      }
      const known = v !== null && m !== undefined;
      const current = known ? (d.current === 'rate' ? m!.rate : v) : NaN;
      const capacity = this.capacity.get(d.key) ?? null;
      out[d.key] = {
        current: dec(current),
        capacity: capacity === null ? null : dec(capacity),
        pct: !known ? 'NaN' : capacity !== null && capacity > 0 ? dec((current / capacity) * 100, 2) : '0.00',
        unit_hint: d.unit,
        ...Object.fromEntries(d.stats.map((s) => [`stats.${s}`, m ? dec(m.stat(s)) : 'NaN'])),
      };
    }
    return out;
  }
}

/** The per-kernel metrics of the modern agent (24.09's docker intrinsic plugin), from the figures this agent reads. */
const KERNEL_METRICS: ReadonlyArray<MetricDef & { from: keyof Figures }> = [
  { key: 'cpu_util', from: 'cpu_used', unit: 'percent', stats: ['avg', 'max'], current: 'rate', capacity: 1000 },
  { key: 'cpu_used', from: 'cpu_used', unit: 'msec', stats: [], current: 'value' },
  { key: 'mem', from: 'mem_cur_bytes', unit: 'bytes', stats: ['max'], current: 'value' },
  { key: 'io_read', from: 'io_read_bytes', unit: 'bytes', stats: ['rate'], current: 'value' },
  { key: 'io_write', from: 'io_write_bytes', unit: 'bytes', stats: ['rate'], current: 'value' },
  { key: 'net_rx', from: 'net_rx_bytes', unit: 'bps', stats: [], current: 'rate' },
  { key: 'net_tx', from: 'net_tx_bytes', unit: 'bps', stats: [], current: 'rate' },
  { key: 'io_scratch_size', from: 'io_cur_scratch_size', unit: 'bytes', stats: ['max'], current: 'value' },
];

/** The node metrics written under the agent id: CPU (percent of one core, capacity 100 per core), memory and the scratch disk. */
const NODE_METRICS: readonly MetricDef[] = [
  { key: 'cpu_util', unit: 'percent', stats: ['avg', 'max'], current: 'value' },
  { key: 'mem', unit: 'bytes', stats: ['max'], current: 'value' },
  { key: 'disk', unit: 'bytes', stats: [], current: 'value' },
];

/** The node's figures the modern node map is made of (null: unknown). */
export interface NodeFiguresIn {
  cpuPct: number | null;
  cores: number;
  memUsed: number | null;
  memTotal: number | null;
  diskUsed: number | null;
  diskTotal: number | null;
}

/** ModernForms keeps the moving statistics of every kernel and of the node, and gives their metric maps for one round. */
export class ModernForms {
  private readonly kernels = new Map<string, MetricSet>();
  private readonly node = new MetricSet();

  /** The metric map of one kernel at `at` (seconds); `memLimit` is the kernel's memory limit in bytes. */
  kernel(id: string, f: Figures | null, memLimit: number | null, at: number): Record<string, ModernMetric> {
    let set = this.kernels.get(id);
    if (!set) this.kernels.set(id, (set = new MetricSet()));
    const values = Object.fromEntries(KERNEL_METRICS.map((d) => [d.key, f ? f[d.from] : null]));
    return set.serialize(KERNEL_METRICS, values, { mem: memLimit }, at);
  }

  /** The `{node, devices}` map written under the agent id. */
  nodeMap(n: NodeFiguresIn, at: number): { node: Record<string, ModernMetric>; devices: Record<string, never> } {
    const values = { cpu_util: n.cpuPct === null ? null : n.cpuPct * n.cores, mem: n.memUsed, disk: n.diskUsed };
    return {
      node: this.node.serialize(NODE_METRICS, values, { cpu_util: n.cores * 100, mem: n.memTotal, disk: n.diskTotal }, at),
      devices: {},
    };
  }

  /** Forgets the kernels not in `live` (gone kernels' statistics). */
  keepOnly(live: ReadonlySet<string>): void {
    for (const id of this.kernels.keys()) if (!live.has(id)) this.kernels.delete(id);
  }
}
