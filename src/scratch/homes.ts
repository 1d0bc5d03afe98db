/**
 * Scratch homes (setting `scratch_type`): where a kernel's `/home/work`
 * lives on the host, `<scratch root>/<kernel id>` in every type.
 *
 * - `hostdir`: a plain directory on the scratch root (no quota).
 * - `hostfile`: a sparse file `<scratch root>/.scratch-files/<agent id>/<kernel id>.ext4`
 *   formatted ext4 and loop-mounted (`mount -o loop,nosuid,nodev`, so the
 *   loop device is freed with the mount) at the home: a kernel that fills it
 *   gets ENOSPC in its own home and nobody else's.
 * - `memory`: a tmpfs named `compute-agent-scratch.<agent id>` mounted at the
 *   home with a size; counted against nothing else (not the memory book).
 *
 * The size is the create's `limits.scratch_mib`, else `scratch_size`.
 * A mount at a home counts as the agent's only when it is a tmpfs of that
 * name or a loop device reading that file, so cleanup never touches what is
 * not this agent's. Removal is type-agnostic (it looks at what is there), so
 * a home made under another `scratch_type` is still cleaned up.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ConfigError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Settings } from '../config/setting-table.js';
import {
  canMount,
  detachLoops,
  hostfileProblems,
  MOUNT_RIGHTS,
  loopBackingFile,
  mountTable,
  tool,
  unmount,
  type MountEntry,
} from './mounts.js';
import { removeTree } from './home-ops.js';

export type ScratchType = Settings['scratchType'];

export interface ScratchOptions {
  root: string;
  agentId: string;
  type: ScratchType;
  log: Logger;
  /** The live figures a new home needs: its default size (scratch_size, MiB) and the kernel user. */
  settings(): Pick<Settings, 'scratchSizeMiB' | 'kernelUid'>;
}

const MiB = 1024 * 1024;

export class ScratchHomes {
  readonly type: ScratchType;
  private realRoot: string | null = null;

  constructor(private readonly o: ScratchOptions) {
    this.type = o.type;
  }

  homeOf(id: string): string {
    return path.join(this.o.root, id);
  }

  /** The folder of this agent's hostfile backing files (ignored by the home sweeps: its name starts with a dot). */
  private get filesDir(): string {
    return path.join(this.o.root, '.scratch-files', this.o.agentId);
  }

  private fileOf(id: string): string {
    return path.join(this.filesDir, `${id}.ext4`);
  }

  private get tmpfsSource(): string {
    return `compute-agent-scratch.${this.o.agentId}`;
  }

  /**
   * Makes the empty home of a new kernel (a leftover of the same id is
   * removed first) and returns its path. On failure it throws having left
   * what it made for {@link remove}, which the caller's rollback calls.
   */
  async make(id: string, sizeMiB: number | null): Promise<string> {
    if (!(await this.remove(id))) throw new Error(`a leftover home of ${id} could not be removed`);
    const home = this.homeOf(id);
    await fs.mkdir(home, { mode: 0o755 });
    const s = this.o.settings();
    const size = Math.floor(sizeMiB ?? s.scratchSizeMiB);
    const uid = s.kernelUid;
    if (this.type === 'hostfile') {
      await fs.mkdir(this.filesDir, { recursive: true, mode: 0o700 });
      const file = this.fileOf(id);
      await fs.writeFile(file, '', { flag: 'wx', mode: 0o600 });
      await fs.truncate(file, size * MiB); // sparse: it takes what the kernel writes
      await tool('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', `root_owner=${uid}:${uid}`, file]);
      await tool('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev', file, home]);
      await removeTree(path.join(home, 'lost+found'));
    } else if (this.type === 'memory') {
      await tool('mount', ['-t', 'tmpfs', '-o', `size=${size}m,mode=0755,uid=${uid},gid=${uid},nosuid,nodev`, this.tmpfsSource, home]);
    }
    return home;
  }

  /**
   * Removes a kernel's home whatever its type: unmounts this agent's mounts
   * at it, removes the folder, detaches the loop device and removes the
   * backing file. Never throws: false (with an error logged) when something
   * is left (a mount that is not the agent's is never touched).
   */
  async remove(id: string): Promise<boolean> {
    const home = this.homeOf(id);
    try {
      for (let m = await this.mountAt(id); m; m = await this.mountAt(id)) {
        if (!(await this.isOurs(m, id)))
          throw new Error(`${home} has a mount that is not this agent's (${m.fstype} from ${m.source}); it is left alone`);
        if ((await unmount(home)) === 'lazily')
          this.o.log.warn('a host process still held a file in the home; it was unmounted lazily', { kernelId: id });
      }
      await removeTree(home); // never through a link the kernel made, nor into a mount
      const file = this.fileOf(id);
      if (
        await fs.access(file).then(
          () => true,
          () => false,
        )
      ) {
        await detachLoops(file);
        await fs.rm(file, { force: true });
      }
      return true;
    } catch (err) {
      this.o.log.error('a scratch home could not be removed; the next agent start tries again', {
        kernelId: id,
        home,
        error: errorMessage(err),
      });
      return false;
    }
  }

  /**
   * After an agent restart, the home of a running kernel: found still
   * mounted (the usual case), mounted again from its backing file (the
   * running container keeps the view it had), or a plain folder.
   */
  async reattach(id: string): Promise<'mounted' | 'reattached' | 'dir'> {
    const m = await this.mountAt(id);
    if (m && (await this.isOurs(m, id))) return 'mounted';
    const file = this.fileOf(id);
    if (
      !m &&
      (await fs.access(file).then(
        () => true,
        () => false,
      ))
    ) {
      await fs.mkdir(this.homeOf(id), { recursive: true, mode: 0o755 });
      await tool('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev', file, this.homeOf(id)]);
      this.o.log.warn('re-attached the hostfile home of a running kernel that was not mounted', { kernelId: id });
      return 'reattached';
    }
    return 'dir';
  }

  /**
   * Removes the mounts and backing files of this agent whose kernel is not
   * in `keep` (what a crash left); returns the kernel ids it cleaned.
   */
  async sweep(keep: ReadonlySet<string>): Promise<string[]> {
    const root = await this.root();
    const ids = new Set<string>();
    for (const m of await mountTable()) {
      const id = path.basename(m.target);
      if (path.dirname(m.target) === root && !keep.has(id) && (await this.isOurs(m, id))) ids.add(id);
    }
    for (const name of await fs.readdir(this.filesDir).catch(() => [] as string[])) {
      const id = name.replace(/\.ext4$/, '');
      if (name.endsWith('.ext4') && !keep.has(id)) ids.add(id);
    }
    for (const id of ids)
      if (await this.remove(id)) this.o.log.info('removed the scratch mount or file of a kernel that is gone', { kernelId: id });
    return [...ids];
  }

  /** The last mount at a kernel's home, if any. */
  private async mountAt(id: string): Promise<MountEntry | undefined> {
    const target = path.join(await this.root(), id);
    return (await mountTable()).filter((m) => m.target === target).pop();
  }

  private async isOurs(m: MountEntry, id: string): Promise<boolean> {
    if (m.fstype === 'tmpfs') return m.source === this.tmpfsSource;
    return (await loopBackingFile(m.source)) === path.join(await this.root(), '.scratch-files', this.o.agentId, `${id}.ext4`);
  }

  /** The scratch root with symlinks resolved, as the mount table and sysfs name it. */
  private async root(): Promise<string> {
    return (this.realRoot ??= await fs.realpath(this.o.root).catch(() => path.resolve(this.o.root)));
  }
}

/** The homes of a kernel service's deps: the agent's, or plain folders on the scratch root (tools, unit tests). */
export function homesOf(deps: {
  scratch?: ScratchHomes | null;
  scratchRoot: string;
  agentId: string;
  log: Logger;
  settings(): Pick<Settings, 'scratchSizeMiB' | 'kernelUid'>;
}): ScratchHomes {
  return (
    deps.scratch ??
    new ScratchHomes({ root: deps.scratchRoot, agentId: deps.agentId, type: 'hostdir', log: deps.log, settings: deps.settings })
  );
}

/**
 * The agent's scratch homes at start: refuses (ConfigError, the agent does
 * not start) a `scratch_type` this host cannot give, saying what is missing.
 */
export async function openScratchHomes(o: ScratchOptions): Promise<ScratchHomes> {
  if (o.type !== 'hostdir') {
    const relevant = o.type === 'hostfile' ? (await hostfileProblems()).problems : canMount() ? [] : [MOUNT_RIGHTS];
    if (relevant.length)
      throw new ConfigError(
        `scratch_type is ${o.type}, which cannot work on this host: ${relevant.join('; ')}; fix that or set scratch_type to hostdir (agent check tells the same)`,
      );
  }
  return new ScratchHomes(o);
}
