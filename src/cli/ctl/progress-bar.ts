/**
 * PullBar draws the progress of an image pull for agentctl from the pull's
 * aggregated Docker progress (list_pulls): on a terminal one bar (bytes,
 * percent, rate) redrawn in place, with a line per layer when the terminal is
 * wide enough; elsewhere a plain line at most once a second.
 */
import type { PullSummary } from '../../rpc/results.js';
import { Throttle } from '../../images/progress.js';
import { formatBytes } from './common.js';

export interface PullBarOptions {
  tty: boolean;
  /** Terminal columns (ignored when not a TTY). */
  columns?: number;
  now?: () => number;
}

/** Terminals at least this wide get a line per layer. */
const LAYER_COLUMNS = 100;

export class PullBar {
  private drawn = 0;
  private readonly throttle: Throttle;
  private readonly now: () => number;
  private samples: Array<{ t: number; bytes: number }> = [];

  constructor(
    readonly image: string,
    private readonly options: PullBarOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.throttle = new Throttle(1000, this.now);
  }

  /** The text to write for the pull's state now ('' when nothing is due). */
  update(p: PullSummary | null): string {
    // Nothing to show until the manifest has given the size (a pull that fails at the manifest shows no bar).
    if (!p || (p.state === 'pulling' && p.bytes_total === 0)) return '';
    const t = this.now();
    this.samples.push({ t, bytes: p.bytes_done });
    this.samples = this.samples.filter((s) => t - s.t <= 5000);
    if (!this.options.tty) return this.throttle.ready() ? this.summary(p) + '\n' : '';
    const lines = [this.bar(p)];
    if ((this.options.columns ?? 80) >= LAYER_COLUMNS) {
      for (const l of p.layers)
        lines.push(
          `  ${l.id.slice(0, 12)} ${l.status.padEnd(18)} ${l.total ? `${formatBytes(l.done)}/${formatBytes(l.total)}` : ''}`.trimEnd(),
        );
    }
    return this.redraw(lines);
  }

  /** The last text: on a terminal the bar is cleared (the caller says how it ended). */
  finish(): string {
    return this.options.tty ? this.redraw([]) : '';
  }

  /** Bytes per second over the last seconds. */
  rate(): number {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (!first || !last || last.t - first.t < 200) return 0;
    return Math.max(0, ((last.bytes - first.bytes) * 1000) / (last.t - first.t));
  }

  private pct(p: PullSummary): number {
    return p.bytes_total > 0 ? Math.min(100, Math.floor((p.bytes_done / p.bytes_total) * 100)) : 0;
  }

  /** The one-line form: `pulling IMAGE: 45% 12.3MiB of 27.1MiB, 3.2MiB/s`. */
  summary(p: PullSummary): string {
    if (p.state === 'queued') return `pulling ${p.image}: queued behind other pulls`;
    return `pulling ${p.image}: ${this.pct(p)}% ${formatBytes(p.bytes_done)} of ${formatBytes(p.bytes_total)}, ${formatBytes(this.rate())}/s`;
  }

  private bar(p: PullSummary): string {
    const cols = Math.max(40, this.options.columns ?? 80);
    const tail =
      p.state === 'queued'
        ? ' queued'
        : ` ${String(this.pct(p)).padStart(3)}% ${formatBytes(p.bytes_done)}/${formatBytes(p.bytes_total)} ${formatBytes(this.rate())}/s`;
    const name = p.image.length > cols / 3 ? '…' + p.image.slice(-Math.floor(cols / 3)) : p.image;
    const width = Math.max(10, cols - name.length - tail.length - 4);
    const full = Math.round((width * this.pct(p)) / 100);
    return `${name} [${'#'.repeat(full)}${'.'.repeat(width - full)}]${tail}`;
  }

  /** Moves up over what was drawn, clears it, draws the new lines. */
  private redraw(lines: string[]): string {
    const up = this.drawn > 0 ? `\x1b[${this.drawn}F` : '';
    this.drawn = lines.length;
    return up + '\x1b[J' + lines.map((l) => l + '\n').join('');
  }
}
