/**
 * Claim records: a claimed pooled container keeps the labels it was created
 * with (Docker cannot change them), so what makes it a kernel — its kernel
 * id, lang, cores and memory — is written to
 * `<scratch root>/.pool-claims/<container id>.json` (root's, outside every
 * kernel's home) before the claim goes on. Re-adoption reads it back; a
 * pooled container without one is idle.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.js';

/** What a claim binds to a pooled container. */
export interface ClaimRecord {
  kernelId: string;
  lang: string;
  cpuSet: number[];
  memMiB: number;
  createdAt: number;
}

/** Reads and writes the claim records of one scratch root. */
export class ClaimStore {
  readonly dir: string;

  constructor(scratchRoot: string) {
    this.dir = path.join(scratchRoot, '.pool-claims');
  }

  private file(containerId: string): string {
    if (!/^[0-9a-f]{12,64}$/.test(containerId)) throw new Error(`${JSON.stringify(containerId)} is not a container id`);
    return path.join(this.dir, `${containerId}.json`);
  }

  /**
   * Writes a record atomically (temp file, rename; nothing half-written on a
   * full disk). Not fsynced: a record matters only while its container
   * runs, and no container survives a crash of the machine.
   */
  async write(containerId: string, rec: ClaimRecord): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.file(containerId), JSON.stringify(rec), 0o600, { sync: false });
  }

  /** The record of a container, or null when it has none (or an unreadable one). */
  async read(containerId: string): Promise<ClaimRecord | null> {
    const text = await fs.readFile(this.file(containerId), 'utf8').catch(() => null); // no record (or none readable): the container was never claimed
    if (text === null) return null;
    try {
      const r = JSON.parse(text) as ClaimRecord;
      if (typeof r.kernelId !== 'string' || typeof r.lang !== 'string' || !Array.isArray(r.cpuSet) || typeof r.memMiB !== 'number')
        return null;
      return r;
    } catch {
      return null;
    }
  }

  /** Removes a record; a missing one is fine. */
  async remove(containerId: string): Promise<void> {
    await fs.rm(this.file(containerId), { force: true });
  }

  /** The container ids that have a record (to sweep those whose container is gone). */
  async list(): Promise<string[]> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[]); // no directory yet: no records
    return names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5));
  }
}
