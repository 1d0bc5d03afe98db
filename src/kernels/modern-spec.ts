/**
 * The kernel creation config of a modern (24.09) manager, read into the
 * same KernelSpec as the 2018 config (src/containers/spec.ts, whose checks of
 * the image, limits and environ it reuses). Each key of 24.09's
 * `KernelCreationConfig` is supported, ignored with a warning, or refused
 * with a ParametersError that names it (the manual's table,
 * docs/reference/modern-config.rst, is written from {@link MODERN_CONFIG_KEYS}).
 */
import path from 'node:path';
import { ParametersError } from '../errors.js';
import { langOfImage } from '../config/lang.js';
import { parseKernelConfig, type KernelSpec, type MountSpec } from '../containers/spec.js';

/** How a key of the modern config is treated. */
export type KeyTreatment = 'supported' | 'ignored' | 'refused unless empty';

/** Every key of 24.09's KernelCreationConfig (and the user keys the issue names), with how it is treated and why. */
export const MODERN_CONFIG_KEYS: ReadonlyArray<{ key: string; treatment: KeyTreatment; note: string }> = [
  {
    key: 'image',
    treatment: 'supported',
    note: '``canonical`` names the image: on image_allow_list as is, or under image_prefix (the prefix stripped gives the lang); other fields ignored',
  },
  {
    key: 'resource_slots',
    treatment: 'supported',
    note: '``cpu`` (cores) and ``mem`` (bytes) as strings or numbers; any other slot with a non-zero amount is refused (no accelerators here)',
  },
  { key: 'environ', treatment: 'supported', note: 'the same rules as the 2018 ``environ``' },
  {
    key: 'mounts',
    treatment: 'supported',
    note: 'maps of ``name``, ``host_path`` (under the vfolder root), ``kernel_path`` (``/home/work/<name>``), ``mount_perm`` ``rw`` or ``wd``; ``ro`` is refused',
  },
  { key: 'cluster_mode', treatment: 'supported', note: '``single-node`` or ``multi-node`` (docs/sessions.rst)' },
  { key: 'cluster_role', treatment: 'supported', note: '``BACKENDAI_CLUSTER_ROLE`` (docs/sessions.rst)' },
  { key: 'cluster_idx', treatment: 'supported', note: '``BACKENDAI_CLUSTER_IDX``' },
  {
    key: 'cluster_hostname',
    treatment: 'supported',
    note: "on a session network, the container's hostname and its name there; ``BACKENDAI_CLUSTER_HOST``",
  },
  { key: 'scaling_group', treatment: 'supported', note: 'returned in the result' },
  { key: 'agent_addr', treatment: 'supported', note: 'returned in the result' },
  { key: 'uid', treatment: 'refused unless empty', note: "must be absent, nil or the agent's kernel_uid" },
  { key: 'main_gid', treatment: 'refused unless empty', note: "must be absent, nil or the agent's kernel_uid" },
  { key: 'supplementary_gids', treatment: 'refused unless empty', note: 'must be absent or empty' },
  { key: 'bootstrap_script', treatment: 'refused unless empty', note: 'not run by this agent' },
  { key: 'startup_command', treatment: 'refused unless empty', note: 'not run by this agent' },
  { key: 'preopen_ports', treatment: 'refused unless empty', note: 'preopened ports are not served to modern managers yet' },
  { key: 'auto_pull', treatment: 'ignored', note: 'images are not pulled by this agent' },
  { key: 'session_type', treatment: 'ignored', note: 'interactive and batch kernels are created alike' },
  {
    key: 'resource_opts',
    treatment: 'supported',
    note: '``shmem`` (bytes, or a size such as ``"64m"`` or ``"1g"``; at most the kernel\'s memory) sizes ``/dev/shm``; other options are ignored',
  },
  { key: 'package_directory', treatment: 'ignored', note: '' },
  { key: 'idle_timeout', treatment: 'ignored', note: "the agent's idle_timeout applies" },
  { key: 'internal_data', treatment: 'ignored', note: '' },
  { key: 'allocated_host_ports', treatment: 'ignored', note: 'the agent picks host ports from container_port_range' },
  { key: 'endpoint_id', treatment: 'ignored', note: '' },
];

const KNOWN = new Map(MODERN_CONFIG_KEYS.map((k) => [k.key, k]));

/** Where the settings come from that the reading needs. */
export interface ModernSpecContext {
  imagePrefix: string;
  imageAllowList: readonly string[];
  vfolderRoot: string;
  kernelUid: number;
}

/** What the modern config says beyond the KernelSpec: for results and `creation_info`. */
export interface ModernKernelExtras {
  clusterRole: string;
  clusterIdx: number;
  clusterHostname: string;
  scalingGroup: string;
  agentAddr: string;
  /** Keys present that are ignored (logged once per creation). */
  ignored: string[];
}

function bad(key: string, why: string): never {
  throw new ParametersError(`config ${key} ${why}`);
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
const empty = (v: unknown) => v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0);

/** A slot amount: a decimal string (as 24.09 sends it) or a number. */
function amount(v: unknown, key: string): number {
  const n = typeof v === 'string' && /^\s*[+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/.test(v) ? Number(v) : typeof v === 'number' ? v : NaN;
  if (!Number.isFinite(n) || n < 0)
    bad(`resource_slots.${key}`, `must be a non-negative decimal string such as "1" or "268435456", got ${JSON.stringify(v)}`);
  return n;
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/**
 * `resource_opts.shmem` in MiB (rounded up), or null when absent or 0 (the
 * kernel_shm_size setting then applies): bytes as a number, or a size as
 * 24.09's BinarySize writes it (`"64m"`, `"1g"`, `"1GiB"`, `"1073741824"`).
 * More than the kernel's memory is refused, as the 24.09 manager refuses it:
 * /dev/shm's pages are charged to that memory.
 */
function shmemOf(opts: unknown, memMiB: number, ignored: string[]): number | null {
  if (empty(opts)) return null;
  if (!isMap(opts)) bad('resource_opts', 'must be a map such as {"shmem": "1g"}');
  for (const key of Object.keys(opts)) if (key !== 'shmem' && !empty(opts[key])) ignored.push(`resource_opts.${key}`);
  const raw = opts.shmem;
  if (raw === undefined || raw === null || raw === '' || raw === 0) return null;
  const m = typeof raw === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(raw) : null;
  const bytes = typeof raw === 'number' ? raw : m ? Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]! : NaN;
  if (!Number.isFinite(bytes) || bytes < 0)
    bad('resource_opts.shmem', `must be a size in bytes or such as "64m" or "1g", got ${JSON.stringify(raw).slice(0, 40)}`);
  const mib = Math.ceil(bytes / 2 ** 20);
  if (mib > memMiB)
    bad(
      'resource_opts.shmem',
      `asks for ${mib} MiB of /dev/shm, more than the kernel's ${memMiB} MiB of memory (resource_slots.mem), which its pages are charged to; ask for less shared memory or more memory`,
    );
  return mib || null;
}

/** The lang of an image reference (src/config/lang.ts); a ParametersError when it is no kernel image of this agent. */
function langOf(canonical: string, ctx: ModernSpecContext): string {
  return (
    langOfImage(canonical, ctx.imagePrefix, ctx.imageAllowList) ??
    bad('image', `${JSON.stringify(canonical)} is neither on image_allow_list nor under image_prefix ${JSON.stringify(ctx.imagePrefix)}`)
  );
}

function mountsOf(raw: unknown, vfolderRoot: string): MountSpec[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw) || raw.length > 64) bad('mounts', 'must be a list of at most 64 mount maps');
  const root = path.resolve(vfolderRoot);
  return raw.map((m: unknown, i) => {
    if (!isMap(m)) bad('mounts', `entry ${i} must be a map of name, host_path, kernel_path and mount_perm`);
    const { name, host_path: hostPath, kernel_path: kernelPath, mount_perm: perm } = m;
    if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(name))
      bad('mounts', `entry ${i}: name must be a safe folder name`);
    if (name === '.config' || name === '.output') bad('mounts', `folder name ${name} is reserved`);
    if (typeof hostPath !== 'string' || !path.isAbsolute(hostPath)) bad('mounts', `${name}: host_path must be an absolute path`);
    const resolved = path.resolve(hostPath);
    if (!resolved.startsWith(root + path.sep)) bad('mounts', `${name}: host_path ${hostPath} is not under the vfolder root ${vfolderRoot}`);
    if (kernelPath !== undefined && kernelPath !== null && path.posix.normalize(String(kernelPath)) !== `/home/work/${name}`) {
      bad('mounts', `${name}: kernel_path must be /home/work/${name} (other places are not supported)`);
    }
    if (perm !== undefined && perm !== null && perm !== 'rw' && perm !== 'wd') {
      bad('mounts', `${name}: mount_perm ${JSON.stringify(perm)} is not supported (rw and wd are; read-only mounts are not yet)`);
    }
    return { name, hostPath: resolved };
  });
}

/** The canonical name of a 24.09 ImageRef's field map: `registry/project/name:tag`, empty parts left out (as its `canonical`). */
export function canonicalOfImageRef(r: Record<string, unknown>): string {
  const repo = [r.registry, r.project, r.name].filter((x) => typeof x === 'string' && x !== '').join('/');
  return `${repo}:${String(r.tag)}`;
}

/**
 * Reads one kernel's modern creation config; `imageRef` (the session's
 * `kernel_image_refs` entry, an ImageRef field map) is the fallback when the
 * config has no `image.canonical`.
 */
export function parseModernKernelConfig(
  config: Record<string, unknown>,
  imageRef: unknown,
  ctx: ModernSpecContext,
): { spec: KernelSpec; extras: ModernKernelExtras } {
  const ignored: string[] = [];
  for (const [key, value] of Object.entries(config)) {
    const known = KNOWN.get(key);
    if (!known) {
      ignored.push(key);
      continue;
    }
    if (known.treatment === 'ignored' && !empty(value)) ignored.push(key);
    if (known.treatment === 'refused unless empty' && !empty(value)) {
      const fine = (key === 'uid' || key === 'main_gid') && value === ctx.kernelUid;
      if (!fine) bad(key, `is not supported by this agent (${known.note}); got ${JSON.stringify(value).slice(0, 80)}`);
    }
  }
  const image = config.image;
  let canonical: unknown = isMap(image) ? image.canonical : undefined;
  if (canonical === undefined && isMap(imageRef)) canonical = canonicalOfImageRef(imageRef);
  if (typeof canonical !== 'string' || canonical === '') bad('image', 'must be a map with the image reference in canonical');
  const mode = config.cluster_mode ?? 'single-node';
  if (mode !== 'single-node' && mode !== 'multi-node')
    bad('cluster_mode', `${JSON.stringify(mode)} is not supported (single-node and multi-node are)`);

  const slots = config.resource_slots ?? {};
  if (!isMap(slots)) bad('resource_slots', 'must be a map of slot name to amount');
  let cpu = 1;
  let memMiB = 256;
  for (const [slot, v] of Object.entries(slots)) {
    const n = amount(v, slot);
    if (slot === 'cpu') cpu = n;
    else if (slot === 'mem') memMiB = Math.ceil(n / (1024 * 1024));
    else if (n !== 0) bad(`resource_slots.${slot}`, `asks for ${n} but this agent has no such device (only cpu and mem are served)`);
  }
  const spec = parseKernelConfig(
    { lang: langOf(canonical, ctx), limits: { cpu_slot: cpu, mem_slot: Math.max(4, memMiB) }, environ: config.environ ?? {} },
    ctx.imagePrefix,
    ctx.vfolderRoot,
    ctx.imageAllowList,
  );
  spec.mounts = mountsOf(config.mounts, ctx.vfolderRoot);
  spec.shmMiB = shmemOf(config.resource_opts, spec.memMiB, ignored);
  const str = (v: unknown, fallback: string) => (typeof v === 'string' ? v : fallback);
  return {
    spec,
    extras: {
      clusterRole: str(config.cluster_role, 'main'),
      clusterIdx: typeof config.cluster_idx === 'number' ? config.cluster_idx : 1,
      clusterHostname: str(config.cluster_hostname, 'main1'),
      scalingGroup: str(config.scaling_group, 'default'),
      agentAddr: str(config.agent_addr, ''),
      ignored,
    },
  };
}
