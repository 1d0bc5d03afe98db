/**
 * Per-kernel preparation of a new scratch home: the `workspace_template`
 * folder copied in (owned by the kernel user, symlinks copied as links and
 * never followed, bounded in size and entries, special files refused), and
 * the `bootstrap_script` of create_kernel written to `/home/work/bootstrap.sh`
 * for the image's entrypoint to run as the kernel user before the runner
 * starts. `waitBootstrap` waits for the entrypoint's verdict
 * (`.config/bootstrap.done` or `.config/bootstrap.failed`: exit code, then
 * the script's last lines).
 */
import { constants as fsc, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { KernelCreationError } from '../errors.js';
import type { Settings } from '../config/setting-table.js';
import { openHome, readHomeFile, writeFileIn } from '../scratch/home-ops.js';
import { DIR_FLAGS, at } from '../scratch/safe-walk.js';

/** Most entries a template may hold. */
const MAX_TEMPLATE_ENTRIES = 100_000;

/**
 * Copies a template folder into a home (created if needed); throws an Error
 * that says which entry broke which rule. What it writes in the home goes
 * through descriptors opened with O_NOFOLLOW (src/scratch/home-ops.ts), made
 * with O_EXCL, and is given to `uid` with fchown (lchown for links).
 */
export async function copyTemplate(
  template: string,
  home: string,
  uid: number,
  maxBytes: number,
): Promise<{ files: number; bytes: number }> {
  const top = await fs.lstat(template).catch(() => null); // no template: nothing to copy
  if (!top?.isDirectory()) throw new Error(`workspace_template ${template} is not a directory (a symlink is not followed either)`);
  await fs.mkdir(home, { recursive: true, mode: 0o755 });
  let bytes = 0;
  let entries = 0;
  const walk = async (rel: string, dir: FileHandle): Promise<void> => {
    for (const e of await fs.readdir(path.join(template, rel), { withFileTypes: true })) {
      if (++entries > MAX_TEMPLATE_ENTRIES) throw new Error(`workspace_template ${template} has more than ${MAX_TEMPLATE_ENTRIES} entries`);
      const name = path.join(rel, e.name);
      if (rel === '' && e.name === '.config')
        throw new Error(`workspace_template ${template} may not hold .config (the agent's folder in the home)`);
      const from = path.join(template, name);
      const to = at(dir, e.name);
      const st = await fs.lstat(from);
      if (st.isSymbolicLink()) {
        await fs.symlink(await fs.readlink(from), to);
        await fs.lchown(to, uid, uid);
      } else if (st.isDirectory()) {
        await fs.mkdir(to, { mode: st.mode & 0o777 });
        const sub = await fs.open(to, DIR_FLAGS);
        try {
          await sub.chmod(st.mode & 0o777);
          await sub.chown(uid, uid);
          await walk(name, sub);
        } finally {
          await sub.close();
        }
      } else if (st.isFile()) {
        bytes += st.size;
        if (bytes > maxBytes)
          throw new Error(`workspace_template ${template} is larger than workspace_template_max_bytes (${maxBytes} bytes)`);
        await fs.copyFile(from, to, fs.constants.COPYFILE_EXCL);
        const fh = await fs.open(to, fsc.O_RDONLY | fsc.O_NOFOLLOW);
        try {
          await fh.chmod(st.mode & 0o777);
          await fh.chown(uid, uid);
        } finally {
          await fh.close();
        }
      } else throw new Error(`workspace_template entry ${name} is not a file, folder or symlink`);
    }
  };
  const homeFh = await openHome(home);
  try {
    await walk('', homeFh);
  } finally {
    await homeFh.close();
  }
  return { files: entries, bytes };
}

/** Fills a new home before its container starts: the workspace template, then the bootstrap script. */
export async function prepareHome(
  home: string,
  spec: { bootstrapScript?: string | null },
  s: Pick<Settings, 'kernelUid' | 'workspaceTemplate' | 'workspaceTemplateMaxBytes'>,
): Promise<void> {
  if (s.workspaceTemplate) await copyTemplate(s.workspaceTemplate, home, s.kernelUid, s.workspaceTemplateMaxBytes);
  if (spec.bootstrapScript) {
    await fs.mkdir(home, { recursive: true, mode: 0o755 });
    await writeBootstrap(home, spec.bootstrapScript, s.kernelUid);
  }
}

const BOOTSTRAP = 'bootstrap.sh';
const DONE = ['.config', 'bootstrap.done'];
const FAILED = ['.config', 'bootstrap.failed'];
/** The most of bootstrap.failed read back: its exit code and the script's last lines. */
const FAILED_MAX_BYTES = 64 * 1024;

/** Writes the bootstrap script into a home, owned by the kernel user (through a descriptor: src/scratch/home-ops.ts). */
export async function writeBootstrap(home: string, script: string, uid: number): Promise<void> {
  const homeFh = await openHome(home);
  try {
    await writeFileIn(homeFh, BOOTSTRAP, script, 0o700, uid);
  } finally {
    await homeFh.close();
  }
}

/**
 * Waits until the entrypoint says how the bootstrap script ended; a failure
 * (or a container that stopped, or the timeout) is a KernelCreationError
 * naming the exit code and the script's last lines.
 */
export async function waitBootstrap(home: string, timeoutSec: number, running: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutSec * 1000;
  for (let i = 0; ; i++) {
    // The markers are written by the entrypoint in a folder the script can change: read as plain files, never through a link.
    if ((await readHomeFile(home, DONE, 1)) !== null) return;
    const failed = await readHomeFile(home, FAILED, FAILED_MAX_BYTES);
    if (failed !== null) {
      const [code, ...lines] = failed.split('\n');
      const tail = lines.join('\n').trim();
      throw new KernelCreationError(
        `the bootstrap script failed with exit code ${code}; its last lines: ${tail ? JSON.stringify(tail.slice(-2000)) : '(no output)'}; the kernel was rolled back`,
      );
    }
    if (i % 10 === 9 && !(await running()))
      throw new KernelCreationError(
        'the kernel container stopped while its bootstrap script ran; get_logs of a retry or docker logs has its output',
      );
    if (Date.now() > deadline)
      throw new KernelCreationError(
        `the bootstrap script did not finish within bootstrap_timeout (${timeoutSec} s); the kernel was rolled back`,
      );
    await sleep(100);
  }
}
