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
import { writeFileAtomic } from '../node/atomic-write.js';

/** Python: the pids of the runner's terminal shells (`/bin/bash -i` children of the runner). */
const SHELLS = [
  'def shells():',
  '    import os',
  '    me, found = str(os.getpid()), set()',
  "    for pid in os.listdir('/proc'):",
  '        try:',
  "            with open('/proc/%s/stat' % pid) as f:",
  "                ppid = f.read().rsplit(')', 1)[1].split()[1]",
  "            with open('/proc/%s/cmdline' % pid, 'rb') as f:",
  "                if ppid == me and f.read() == b'/bin/bash\\x00-i\\x00':",
  '                    found.add(int(pid))',
  '        except (OSError, IndexError, ValueError):',
  '            pass',
  '    return found',
];

/** Python source that defines a function, calls it once and deletes it, leaving no name in the user's namespace. */
function once(name: string, params: string, body: string[], args: string): string {
  const indent = (l: string) => `    ${l}`;
  return [`def ${name}(${params}):`, ...SHELLS.map(indent), ...body.map(indent), `${name}(${args})`, `del ${name}`].join('\n');
}

/**
 * The Python statement that gives a claimed container's running runner the
 * kernel's environment: it updates `os.environ` (so query code, batch
 * commands and later shells see it) and hangs up the terminal's shell, which
 * was started before the claim; the runner starts a new one with the new
 * environment a moment later. It prints the pids of the old shells as JSON
 * (for {@link shellWaitStatement}). It runs in the user's namespace and leaves
 * no name there.
 */
export function environStatement(environ: Record<string, string>): string {
  const body = [
    'import os',
    'os.environ.update(env)',
    'old = shells()',
    'for pid in old:',
    '    try:',
    '        os.kill(pid, 1)',
    '    except OSError:',
    '        pass',
    "print(sorted(old))",
  ];
  // JSON string literals are Python string literals.
  return once('_compute_agent_claim', 'env', body, JSON.stringify(environ));
}

/** The Python statement that waits (3 s at most) until the runner has a terminal shell other than the hung-up ones. */
export function shellWaitStatement(oldShells: number[]): string {
  const body = ['import time', 'deadline = time.monotonic() + 3', 'while not (shells() - set(old)) and time.monotonic() < deadline:', '    time.sleep(0.01)'];
  return once('_compute_agent_wait', 'old', body, JSON.stringify(oldShells));
}

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
      if (typeof r.kernelId !== 'string' || typeof r.lang !== 'string' || !Array.isArray(r.cpuSet) || typeof r.memMiB !== 'number') return null;
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
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5));
  }
}
