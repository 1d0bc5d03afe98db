/**
 * The runner environment the agent brings to images that carry no runner of
 * their own (docs/images.rst, "Bring your own image"): a self-contained tree
 * built by deploy/runner-env/build.sh (its own loader, glibc, Python, pyzmq,
 * msgpack, busybox and the runner) under `runner_env_root/<digest>`. The
 * agent finds the newest at start and checks it against its MANIFEST, and a
 * kernel of such an image gets it mounted read-only at {@link RUNNER_ENV_MOUNT}
 * with the environment's entrypoint as its command.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { KernelCreationError } from '../errors.js';

/** Where a kernel sees the runner environment (read-only); the env's entrypoint and compiled paths name it. */
export const RUNNER_ENV_MOUNT = '/opt/compute-agent/runner';

/** A checked runner environment on this node. */
export interface RunnerEnv {
  /** Its folder, `runner_env_root/<digest>`. */
  dir: string;
  /** The first 24 hex digits of the SHA-256 of its MANIFEST, which is also its folder's name. */
  digest: string;
  /** Entries its manifest lists, and the bytes of its files. */
  entries: number;
  bytes: number;
}

/** One line of a MANIFEST: `f|d|l mode size sha256|target|- path`. */
interface ManifestEntry {
  type: 'f' | 'd' | 'l';
  mode: number;
  size: number;
  hash: string;
  path: string;
}

const LINE = /^([fdl]) ([0-7]{1,4}) (\d+) (\S+) (.+)$/;
const DIGEST = /^[0-9a-f]{24}$/;

function parseManifest(text: string, dir: string): ManifestEntry[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line, i) => {
      const m = LINE.exec(line);
      if (!m || m[5]!.split('/').includes('..') || path.isAbsolute(m[5]!))
        throw new Error(`${dir}/MANIFEST line ${i + 1} is not an entry: ${JSON.stringify(line.slice(0, 200))}`);
      return { type: m[1] as 'f' | 'd' | 'l', mode: parseInt(m[2]!, 8), size: Number(m[3]), hash: m[4]!, path: m[5]! };
    });
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * Checks a runner environment against its MANIFEST: the manifest's digest
 * is the folder's name, and every entry is there with its type, mode and
 * size (and, when `full`, every file its SHA-256: `agent check` does that).
 * Throws an Error naming the first difference.
 */
export async function checkRunnerEnv(dir: string, full = false): Promise<RunnerEnv> {
  const digest = path.basename(dir);
  if (!DIGEST.test(digest)) throw new Error(`${dir} is not named by a digest (24 hex digits)`);
  const text = await fs.readFile(path.join(dir, 'MANIFEST'), 'utf8');
  const actual = createHash('sha256').update(text).digest('hex').slice(0, 24);
  if (actual !== digest) throw new Error(`${dir}/MANIFEST has digest ${actual}, not its folder's name: the environment was changed`);
  let bytes = 0;
  const entries = parseManifest(text, dir);
  for (const e of entries) {
    const p = path.join(dir, e.path);
    const st = await fs.lstat(p).catch(() => null);
    const type = st?.isSymbolicLink() ? 'l' : st?.isDirectory() ? 'd' : st?.isFile() ? 'f' : null;
    if (!st || type !== e.type) throw new Error(`${p} is missing or not a ${{ f: 'file', d: 'folder', l: 'symlink' }[e.type]}`);
    if (e.type === 'l') {
      if ((await fs.readlink(p)) !== e.hash) throw new Error(`${p} points elsewhere than its manifest says`);
      continue;
    }
    if ((st.mode & 0o7777) !== e.mode)
      throw new Error(`${p} has mode ${(st.mode & 0o7777).toString(8)}, its manifest ${e.mode.toString(8)}`);
    if (st.uid !== 0 && process.getuid?.() === 0) throw new Error(`${p} is not owned by root (a kernel-side user might change it)`);
    if (e.type === 'f') {
      if (st.size !== e.size) throw new Error(`${p} has ${st.size} bytes, its manifest ${e.size}`);
      if (full && (await sha256File(p)) !== e.hash) throw new Error(`${p} differs from its manifest (SHA-256)`);
      bytes += st.size;
    }
  }
  return { dir, digest, entries: entries.length, bytes };
}

/**
 * The newest runner environment under `root` (the one whose
 * `<digest>.installed` marker build.sh touched last), checked (cheaply:
 * {@link checkRunnerEnv} without hashing); `env` null and `problem` saying
 * why when there is none or it fails its check.
 */
export async function findRunnerEnv(root: string, full = false): Promise<{ env: RunnerEnv | null; problem: string | null }> {
  const names = await fs.readdir(root).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  const installed = await Promise.all(
    names
      .filter((n) => n.endsWith('.installed') && DIGEST.test(n.slice(0, -'.installed'.length)))
      .map(async (n) => ({ dir: path.join(root, n.slice(0, -'.installed'.length)), at: (await fs.stat(path.join(root, n))).mtimeMs })),
  );
  const newest = installed.sort((a, b) => b.at - a.at)[0];
  if (!newest) return { env: null, problem: `no runner environment under ${root} (runner_env_root)` };
  try {
    return { env: await checkRunnerEnv(newest.dir, full), problem: null };
  } catch (err) {
    return { env: null, problem: `the runner environment ${newest.dir} fails its check: ${(err as Error).message}` };
  }
}

/**
 * How a kernel of the image gets its runner: `baked`, the image's own (it
 * says so with `io.sorna.version`, as this project's and the 2018 runner
 * images do), or the agent's runner environment (src/containers/runner-env.ts)
 * with user code run in `mode`: `python` with the image's Python at `python`
 * (null: the one the entrypoint finds on the image's PATH), `shell`, or
 * `probe` (a Python on the image's PATH, else a shell kernel). `problem`:
 * why the labels cannot be taken (the create is refused).
 */
export type RunnerPlan = { baked: true } | { baked: false; mode: 'python' | 'shell' | 'probe'; python: string | null; problem?: string };

/** The label of this project's that overrides the choice: `baked` or `inject`. */
export const RUNNER_LABEL = 'io.compute-agent.runner';

/**
 * Reads the runner plan from an image's labels: {@link RUNNER_LABEL} first,
 * then `io.sorna.version` (baked); otherwise injected, with
 * `ai.backend.runtime-type` (`python`, or another runtime: a shell kernel)
 * and `ai.backend.runtime-path` (an absolute path inside the container; the
 * agent only hands it to the entrypoint as CA_USER_PYTHON, never resolves it
 * on the host) as modern Backend.AI images declare them.
 */
export function runnerPlan(labels: Record<string, string>): RunnerPlan {
  const forced = labels[RUNNER_LABEL]?.trim().toLowerCase();
  if (forced === 'baked' || (forced !== 'inject' && (labels['io.sorna.version'] ?? '').trim() !== '')) return { baked: true };
  const type = (labels['ai.backend.runtime-type'] ?? '').trim().toLowerCase();
  const runtimePath = (labels['ai.backend.runtime-path'] ?? '').trim();
  const problem =
    runtimePath && !/^\/[\x21-\x7e]{0,1023}$/.test(runtimePath)
      ? `its label ai.backend.runtime-path=${JSON.stringify(runtimePath.slice(0, 100))} is not an absolute path of at most 1024 printable characters without spaces`
      : undefined;
  const distro = (labels['ai.backend.base-distro'] ?? '').trim().toLowerCase();
  const musl = distro.startsWith('alpine')
    ? `it is built on musl libc (its label ai.backend.base-distro=${distro}); ${MUSL_REFUSAL}`
    : undefined;
  const p = (problem ?? musl) ? { problem: problem ?? musl } : {};
  if (type === 'python' || (type === '' && runtimePath)) return { baked: false, mode: 'python', python: runtimePath || null, ...p };
  if (type !== '') return { baked: false, mode: 'shell', python: null, ...p };
  return { baked: false, mode: 'probe', python: null, ...p };
}

/** The fix named wherever a runner environment is missing or broken. */
export const RUNNER_ENV_FIX = 'build one with deploy/runner-env/build.sh (ROOT=<runner_env_root>) and restart the agent';

/**
 * Refuses, before anything is taken, a kernel of an image that needs the
 * runner environment when this node has none, or whose labels say how code
 * runs in a way the agent cannot take.
 */
export function refuseUnservable(plan: RunnerPlan, image: string, env: RunnerEnv | null, problem: string | null): void {
  if (plan.baked) return;
  if (plan.problem) throw new KernelCreationError(`the image ${image} cannot be a kernel: ${plan.problem}`);
  if (!env)
    throw new KernelCreationError(
      `the image ${image} carries no runner (no io.sorna.version label) and this node has no runner environment to bring to it (${problem ?? 'none found'}): ${RUNNER_ENV_FIX}`,
    );
}

/** The files whose presence says an image is built on musl libc, which the runner environment's glibc cannot serve. */
export const MUSL_LOADERS = ['/lib/ld-musl-x86_64.so.1', '/lib/ld-musl-aarch64.so.1'];

/** What the refusal of a musl image says beside why. */
export const MUSL_REFUSAL =
  "the agent's runner environment needs a glibc image (Debian, Ubuntu, RHEL and the like): use one, or bake this project's runner into the image (docs/images.rst)";

/**
 * Refuses a created (not started) container of an image on musl libc (Alpine
 * and the like), found by its loader; `exists` asks Docker whether a path is
 * in the container. (An `ai.backend.base-distro=alpine...` label is refused
 * before, from the labels: src/containers/image-traits.ts.)
 */
export async function refuseMusl(image: string, exists: (p: string) => Promise<boolean>): Promise<void> {
  for (const p of MUSL_LOADERS)
    if (await exists(p)) throw new KernelCreationError(`the image ${image} is built on musl libc (it holds ${p}); ${MUSL_REFUSAL}`);
}

/** The container request's part for a kernel that runs the injected runner: mount, entrypoint and environment. */
export function injection(
  plan: Exclude<RunnerPlan, { baked: true }>,
  env: RunnerEnv,
  kernelUid: number,
): { bind: string; entrypoint: string[]; env: string[] } {
  const vars = [`LOCAL_USER_ID=${kernelUid}`];
  if (plan.mode === 'shell') vars.push('CA_KERNEL_MODE=shell');
  if (plan.mode === 'python' && plan.python) vars.push(`CA_USER_PYTHON=${plan.python}`);
  return {
    bind: `${env.dir}:${RUNNER_ENV_MOUNT}:ro`,
    entrypoint: [`${RUNNER_ENV_MOUNT}/bin/busybox`, 'sh', `${RUNNER_ENV_MOUNT}/entrypoint.sh`],
    env: vars,
  };
}
