/**
 * OomWatch tells a runner that died of an OOM kill from one that died
 * otherwise: it keeps the kernel's OOM-kill count from the last look, and a
 * runner restart compares it with a fresh one (describeRunnerEnd in
 * runner-records.ts then words the ending).
 */
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';

/** What the watch reads, through its relay's current owner (a claim rebinds it). */
export interface OomWatchOptions {
  /** Reads the kernel's OOM kills so far (resolving to null: unknown); null when the kernel's owner cannot say. */
  oomKills(): Promise<number | null> | null;
  log(): Logger;
}

/** OomWatch is the OOM-kill count of one kernel as its relay last saw it. */
export class OomWatch {
  private seen: Promise<number | null>;

  constructor(private readonly options: OomWatchOptions) {
    this.seen = this.look();
  }

  /** Takes the count afresh (a new owner of the relay: kills before it are not its runner's). */
  rebase(): void {
    this.seen = this.look();
  }

  /** Whether the kernel was OOM-killed since the last look (false when either count is unknown); the count read now is the next look's base. */
  async killedSince(): Promise<boolean> {
    const before = await this.seen;
    this.seen = this.look();
    const now = await this.seen;
    return before !== null && now !== null && now > before;
  }

  private look(): Promise<number | null> {
    const read = this.options.oomKills();
    if (!read) return Promise.resolve(null);
    return read.catch((err: unknown) => {
      this.options
        .log()
        .warn("could not read the kernel's OOM kills; a runner restart is not told apart from an OOM kill", { error: errorMessage(err) });
      return null;
    });
  }
}
