/**
 * KernelSpec is what create_kernel and restart_kernel are asked for, read
 * from the 2018 manager's config map (docs/wire-contract.rst, "RPC") and checked
 * before anything is taken: a bad config is a ParametersError that names the
 * key.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ParametersError } from '../errors.js';
import { resolveImage } from '../config/lang.js';

/** A vfolder mount: `/home/work/<name>` from `<vfolder root>/<host>/<id>`. */
export interface MountSpec {
  name: string;
  hostPath: string;
}

export interface KernelSpec {
  /** `name:tag` as the manager sent it. */
  lang: string;
  image: string;
  cpuCount: number;
  memMiB: number;
  gpuCount: number;
  mounts: MountSpec[];
  environ: Record<string, string>;
  cpuSet: number[] | null;
  gpuSet: number[] | null;
  /** `config.bootstrap_script`: run as the kernel user before the runner starts; null = none. */
  bootstrapScript?: string | null;
  /** `limits.scratch_mib`: MiB of a hostfile or memory home; null = the scratch_size setting. */
  scratchMiB?: number | null;
  /** MiB of its /dev/shm as the create asked (a modern manager's `resource_opts.shmem`); null = {@link shmMiBOf}'s default. */
  shmMiB?: number | null;
  /**
   * For a kernel of a multi-kernel session: the session network it joins and its hostname there, and at its
   * create the session's SSH key pair (docs/sessions.rst); absent: the kernel network. `overlay`: the
   * network is a multi-node session's Docker Swarm overlay, joined beside the kernel network
   * (src/containers/session-overlay.ts).
   */
  cluster?: {
    network: string;
    hostname: string;
    overlay?: boolean;
    ssh?: { publicKey: string; privateKey: string } | null;
  } | null;
}

/**
 * The MiB of a kernel's /dev/shm: what its create asked for, else
 * `settingMiB` (kernel_shm_size). Not capped at the kernel's memory limit:
 * /dev/shm's pages are charged to the kernel's memory cgroup, so the limit
 * bounds what it holds anyway, and one size for every kernel lets a warm
 * pooled container serve a kernel of less memory than its type.
 */
export function shmMiBOf(spec: Pick<KernelSpec, 'shmMiB'>, settingMiB: number): number {
  return spec.shmMiB ?? settingMiB;
}

/** Largest `bootstrap_script`. */
export const MAX_BOOTSTRAP_BYTES = 64 * 1024;

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;
/** Largest `environ` in all (keys, values and separators): it becomes the container's environment and a file. */
export const MAX_ENVIRON_BYTES = 1024 * 1024;
/**
 * Variables the manager may not set: the agent sets the first ones, and the
 * image's entrypoint runs as root before it drops to the kernel user, so a
 * variable that changes what a root shell runs (or which user it becomes)
 * would let code in the kernel gain root in its container.
 */
const RESERVED_ENV =
  /^(LOCAL_USER_ID|LOCAL_GROUP_ID|RUNNER|RUNNER_PREVIOUS_STATUS|PATH|IFS|ENV|BASH_ENV|SHELLOPTS|BASHOPTS|PS4|GLOBIGNORE|CDPATH|LD_[A-Z_]*)$/;

/**
 * Variables that stop the kernel runner's Python from starting at all (it
 * finds no standard library, or runs something else): refused at create
 * instead of making a kernel whose every run would wait for a runner that
 * never comes. Others that break it are caught by the create's wait for the
 * runner (runner_ready_timeout), which names what the runner printed.
 */
const INTERPRETER_ENV = /^(PYTHONHOME|PYTHONPLATLIBDIR|PYTHONEXECUTABLE|PYTHONINSPECT)$/;

/**
 * The smallest memory limit (MiB) a kernel may have: the runner alone peaks
 * at about 14 MiB of its cgroup and is killed in a loop at 12 MiB (measured
 * on the python:3-debian image); 32 leaves it room for a first import.
 */
export const MIN_MEM_MIB = 32;

function bad(key: string, why: string): never {
  throw new ParametersError(`config ${key} ${why}`);
}

function num(v: unknown, key: string, min: number, max: number, fallback: number): number {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) bad(key, `must be a number from ${min} to ${max}`);
  return v;
}

function intList(v: unknown, key: string): number[] | null {
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v) || v.length > 1024 || !v.every((x) => Number.isInteger(x) && x >= 0 && x < 4096))
    bad(key, 'must be a list of core numbers');
  return [...new Set(v as number[])].sort((a, b) => a - b);
}

/** Reads a config map into a KernelSpec; `imagePrefix` + lang (or the allow-list) names the image, `vfolderRoot` holds the mounts. */
export function parseKernelConfig(
  config: Record<string, unknown>,
  imagePrefix: string,
  vfolderRoot: string,
  imageAllowList: readonly string[] = [],
): KernelSpec {
  const lang = config.lang;
  if (typeof lang !== 'string') bad('lang', 'must be an image "name:tag" such as "python:3-debian"');
  let image: string;
  try {
    image = resolveImage(lang, imagePrefix, imageAllowList);
  } catch (err) {
    bad('lang', (err as Error).message.replace(/^lang /, ''));
  }
  const limits = (config.limits ?? {}) as Record<string, unknown>;
  if (typeof limits !== 'object' || Array.isArray(limits)) bad('limits', 'must be a map');
  const cpu = num(limits.cpu_slot, 'limits.cpu_slot', 0, 1024, 1);
  const mem = num(limits.mem_slot, 'limits.mem_slot', 0, 16 * 1024 * 1024, 256); // MiB (the 2018 x256 was a bug)
  if (mem < MIN_MEM_MIB)
    bad('limits.mem_slot', `is ${mem} MiB: a kernel needs at least ${MIN_MEM_MIB} MiB (its runner alone takes about 14 MiB)`);
  const gpu = num(limits.gpu_slot, 'limits.gpu_slot', 0, 64, 0);
  const scratchMiB =
    limits.scratch_mib === undefined || limits.scratch_mib === null
      ? null
      : Math.floor(num(limits.scratch_mib, 'limits.scratch_mib', 8, 16 * 1024 * 1024, 0));

  const mounts: MountSpec[] = [];
  const rawMounts = config.mounts ?? [];
  if (!Array.isArray(rawMounts) || rawMounts.length > 64) bad('mounts', 'must be a list of [folder name, host, folder id]');
  for (const m of rawMounts as unknown[]) {
    if (!Array.isArray(m) || m.length < 3 || !m.slice(0, 3).every((x) => typeof x === 'string' && SEGMENT.test(x))) {
      bad('mounts', `entry ${JSON.stringify(m)} must be [folder name, host, folder id] of safe names (no "/" or "..")`);
    }
    const [name, host, id] = m as [string, string, string];
    if (name === '.config' || name === '.output') bad('mounts', `folder name ${name} is reserved`);
    const hostPath = path.join(vfolderRoot, host, id);
    if (!hostPath.startsWith(path.resolve(vfolderRoot) + path.sep)) bad('mounts', `entry ${JSON.stringify(m)} leaves the vfolder root`);
    mounts.push({ name, hostPath });
  }

  const environ: Record<string, string> = {};
  const rawEnv = config.environ ?? {};
  if (typeof rawEnv !== 'object' || rawEnv === null || Array.isArray(rawEnv)) bad('environ', 'must be a map of str to str');
  const entries = Object.entries(rawEnv as Record<string, unknown>);
  if (entries.length > 1024) bad('environ', 'has more than 1024 entries');
  let total = 0;
  for (const [k, v] of entries) {
    if (!ENV_KEY.test(k))
      bad('environ', `key ${JSON.stringify(k.slice(0, 64))} is not a variable name (letters, digits and "_", at most 256)`);
    if (RESERVED_ENV.test(k)) bad('environ', `key ${k} is reserved: the agent or the image's root entrypoint reads it`);
    if (INTERPRETER_ENV.test(k))
      bad(
        'environ',
        `key ${k} would stop the kernel's Python runner from starting (it changes where Python finds its standard library or how it runs); leave it out`,
      );
    if (typeof v !== 'string' || v.length > 65_536 || v.includes('\n') || v.includes('\0'))
      bad('environ', `value of ${k} must be a single-line str of at most 65536 characters`);
    total += Buffer.byteLength(k) + Buffer.byteLength(v) + 2;
    if (total > MAX_ENVIRON_BYTES) bad('environ', `is larger than ${MAX_ENVIRON_BYTES} bytes in all`);
    environ[k] = v;
  }

  const cpuSet = intList(config.cpu_set, 'cpu_set');
  const gpuSet = intList(config.gpu_set, 'gpu_set');
  const boot = config.bootstrap_script ?? null;
  if (boot !== null && (typeof boot !== 'string' || Buffer.byteLength(boot) > MAX_BOOTSTRAP_BYTES || boot.includes('\0'))) {
    bad('bootstrap_script', `must be a str of at most ${MAX_BOOTSTRAP_BYTES} bytes without NUL`);
  }
  return {
    lang,
    image,
    cpuCount: cpuSet?.length ?? Math.max(1, Math.ceil(cpu)),
    memMiB: Math.floor(mem),
    gpuCount: gpuSet?.length || Math.ceil(gpu), // whole devices: a fractional gpu_slot is rounded up
    mounts,
    environ,
    cpuSet,
    gpuSet,
    bootstrapScript: boot || null,
    scratchMiB,
  };
}

/**
 * Checks that every mount's host folder exists, is a directory (Docker would
 * create a missing one as root) and, with symlinks resolved, is still under
 * the vfolder root. Runs before anything is taken.
 */
export async function checkMounts(mounts: readonly MountSpec[], vfolderRoot: string): Promise<void> {
  if (mounts.length === 0) return;
  const root = await fs
    .realpath(vfolderRoot)
    .catch(() => bad('mounts', `cannot be used: the vfolder root ${vfolderRoot} (volumes/_mount) does not exist`));
  for (const m of mounts) {
    const real = await fs.realpath(m.hostPath).catch(() => bad('mounts', `folder ${m.name}: ${m.hostPath} does not exist`));
    if (!real.startsWith(root + path.sep)) bad('mounts', `folder ${m.name}: ${m.hostPath} leads outside the vfolder root`);
    const st = await fs.stat(real);
    if (!st.isDirectory()) bad('mounts', `folder ${m.name}: ${m.hostPath} is not a directory`);
  }
}
