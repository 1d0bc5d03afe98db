/**
 * The settings the agent reads from etcd (docs/wire-contract.rst, "etcd"): the one
 * catalogue of every key, its type, default and limits, and the one function
 * that compiles cluster-wide and per-node values into a typed object. It runs
 * at start (where a bad value stops the agent) and again on every change
 * (where a bad value is logged and the last good settings stay).
 */

/** Settings are the compiled values of the `config/agent/...` keys. */
export interface Settings {
  /** Seconds between `instance_heartbeat` events. */
  heartbeatIntervalSec: number;
  /** Prefix that turns a `lang` into an image name. */
  imagePrefix: string;
  /** Events kept while the manager's sink is unreachable; beyond that they are dropped and counted. */
  eventQueueLimit: number;
  /** Largest RPC message accepted, in bytes; a larger one drops the peer's connection. */
  rpcMaxMessageBytes: number;
  /** Kernel creations running against Docker at once; more wait in order. */
  createConcurrency: number;
  /** How many kernels may share one CPU core. */
  cpuOvercommit: number;
  /** Seconds destroy_kernel may take to see a container gone before it answers agent.DestroyPending. */
  destroyTimeoutSec: number;
  /** MiB the scratch root must have free for a new kernel. */
  scratchReserveMiB: number;
  /** What a kernel's home is (src/scratch/homes.ts): a plain folder, a loop-mounted ext4 file, or a tmpfs. */
  scratchType: 'hostdir' | 'hostfile' | 'memory';
  /** MiB of a hostfile or memory home when the create's limits.scratch_mib names none. */
  scratchSizeMiB: number;
  /** Seconds a kernel the manager's sync_kernels does not list may stay before it is destroyed; 0 = report only. */
  syncGraceSec: number;
  /** Seconds between self-syncs of the kernel records against Docker's containers; 0 = none. */
  selfSyncIntervalSec: number;
  /** download_file calls building their archive at once; more wait (up to 16) in order. */
  downloadConcurrency: number;
  /** MiB of the node's memory kept for the OS and the agent: never promised to kernels. */
  memReserveMiB: number;
  /** How many times the node's memory (minus the reserve) kernels' limits may add up to. */
  memOvercommit: number;
  /** The uid that owns scratch homes and, for uid-match images, runs the kernel. */
  kernelUid: number;
  /** Largest file upload_file accepts. */
  maxUploadBytes: number;
  /** Largest archive download_file returns. */
  maxDownloadBytes: number;
  /** Seconds a run may take; 0 uses the image's `io.sorna.timeout` label. */
  execTimeoutSec: number;
  runnerReadyTimeoutSec: number;
  /** File holding the agent's CURVE key pair; empty = RPC without CURVE (2018 managers). */
  rpcKeypairFile: string;
  /** Z85 public keys of the managers allowed to call the agent when CURVE is on. */
  rpcAllowedKeys: string[];
  callosumCurvePort: number;
  callosumKeypairFile: string;
  callosumManagerKeys: string[];
  /** Kernels get Docker's `no-new-privileges` (setuid binaries do not raise privileges). */
  kernelNoNewPrivileges: boolean;
  /** Capabilities kernels keep after dropping all; `null` = Docker's default set (nothing dropped). */
  kernelCapabilities: string[] | null;
  /** `default` = Docker's default seccomp profile; `unconfined` turns seccomp off (as the 2018 agent did). */
  kernelSeccomp: 'default' | 'unconfined';
  /** Most processes and threads a kernel may hold at once; 0 = unlimited. */
  kernelPidsLimit: number;
  /** Open files per process in a kernel (soft and hard); 0 = Docker's default. */
  kernelNofileLimit: number;
  /** Host address kernel ports are published on; empty = the kernel host address the manager is told. */
  kernelPublishAddr: string;
  /** The host ports kernel ports are published on (docs/service-ports.rst, "The host port range"), `LO-HI` inclusive (portRangeBounds reads it). */
  containerPortRange: string;
  /** Seconds a released host port waits before it is given out again. */
  portReuseCooldownSec: number;
  /** Image names kernels may use besides those under `image_prefix` (exact `name:tag`). */
  imageAllowList: string[];
  /** GPUs the agent may hand out, by index or UUID (the 2018 agent's `--limit-gpus`); empty = all. */
  gpuAllow: string[];
  /** When a create pulls its image: `missing` (not here), `digest` (also when the registry's digest differs), `never`. */
  autoPull: 'missing' | 'digest' | 'never';
  /** Image pulls at once; more wait in order. */
  pullConcurrency: number;
  /** Seconds a pull may take before it is aborted. */
  pullTimeoutSec: number;
  /** Free bytes kept on Docker's data root beyond twice an image's compressed size. */
  pullSpaceMarginBytes: number;
  /** Langs (`name:tag`, resolved like create's) this node must have; missing ones are pulled in the background. */
  prepull: string[];
  /** Whether the agent waits for the prepull list before it registers `running`. */
  prepullBeforeRunning: boolean;
  /** Script run once at agent start before `running`; empty = none. Root-owned, not group/world-writable. */
  nodeStartupScript: string;
  /** Seconds the start-up script may run. */
  nodeStartupTimeoutSec: number;
  /** What a failed start-up script does: `abort` the start, or `continue` with a warning. */
  nodeStartupFailure: 'abort' | 'continue';
  /** Host folder copied into each new scratch home; empty = none. */
  workspaceTemplate: string;
  /** Largest workspace template, in bytes of file content. */
  workspaceTemplateMaxBytes: number;
  /** Seconds a create waits for a kernel's bootstrap_script to finish. */
  bootstrapTimeoutSec: number;
  /** TTL of the etcd lease that holds the registration: a node cut off from etcd disappears from it after this long. */
  registrationLeaseTtlSec: number;
}

/** A parser of a setting's etcd value that says what it takes (`type`, for --help and the manual). */
export type SettingParser<T> = ((raw: string) => T) & { readonly type: string };

/** A parser that says what it takes (`type`). */
export function parser<T>(type: string, parse: (raw: string) => T): SettingParser<T> {
  return Object.assign(parse, { type });
}

/** SettingSpec is the declaration of one etcd setting: the manual's settings table is written from these. */
export interface SettingSpec<K extends keyof Settings> {
  /** Key below `config/agent/` (cluster) and `nodes/agents/<id>/config/` (node). */
  key: string;
  field: K;
  /** What the setting means, in plain text (it goes into --help, error messages and the manual). */
  doc: string;
  default: Settings[K];
  /** Whether a change applies while running; otherwise it applies at the next start. */
  live: boolean;
  parse: SettingParser<Settings[K]>;
  /** The manual section that tells more, by its title. */
  see?: string;
}

/** A parser of a number setting in `min..max` (whole numbers only when `integer`), with errors that name the value. */
export function number(min: number, max: number, integer = false): SettingParser<number> {
  return parser(`${integer ? 'integer' : 'number'} ${min}-${max}`, (raw: string): number => {
    const v = Number(raw.trim());
    if (raw.trim() === '' || !Number.isFinite(v)) throw new Error(`${JSON.stringify(raw)} is not a number`);
    if (integer && !Number.isInteger(v)) throw new Error(`${JSON.stringify(raw)} is not a whole number`);
    if (v < min || v > max) throw new Error(`${v} is outside ${min}..${max}`);
    return v;
  });
}

function list(item: RegExp, what: string): SettingParser<string[]> {
  return parser(`list, each ${what}; commas or spaces between`, (raw: string): string[] => {
    const items = raw.split(/[\s,]+/).filter(Boolean);
    for (const i of items) if (!item.test(i)) throw new Error(`${JSON.stringify(i)} is not ${what}`);
    return [...new Set(items)];
  });
}

const bool = parser('boolean (true, false, yes, no, on, off, 1, 0)', (raw: string): boolean => {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new Error(`${JSON.stringify(raw)} is not true or false`);
});

/** The capabilities kernels keep by default: what the image's entrypoint needs to switch to the kernel user (README, Security). */
export const DEFAULT_KERNEL_CAPABILITIES = ['SETUID', 'SETGID'];

const capabilities = parser('capability names (commas or spaces between), none, or docker-default', (raw: string): string[] | null => {
  if (raw.trim() === 'docker-default') return null;
  if (raw.trim() === '' || raw.trim() === 'none') return [];
  return list(/^(CAP_)?[A-Z_]{2,32}$/, 'a capability name such as SETUID')(raw.toUpperCase()).map((c) => c.replace(/^CAP_/, ''));
});

function oneOf<T extends string>(...values: T[]): SettingParser<T> {
  return parser(`one of ${values.join(', ')}`, (raw: string): T => {
    if (!(values as string[]).includes(raw.trim())) throw new Error(`${JSON.stringify(raw)} is not one of ${values.join(', ')}`);
    return raw.trim() as T;
  });
}

const address = parser('IP address or empty', (raw: string): string => {
  const v = raw.trim();
  if (v !== '' && !/^([0-9.]+|[0-9A-Fa-f:]+)$/.test(v)) throw new Error(`${JSON.stringify(raw)} is not an IP address`);
  return v;
});

/** The bounds of a `container_port_range` value (already checked by its parser). */
export function portRangeBounds(value: string): { lo: number; hi: number } {
  const [lo, hi] = value.split('-').map(Number) as [number, number];
  return { lo, hi };
}
/** `LO-HI`: at least the four runner ports of one kernel, above 1023. */
const portRange = parser('port range LO-HI (1024 <= LO, HI <= 65535, at least 4 ports)', (raw: string): string => {
  const m = /^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$/.exec(raw);
  const lo = Number(m?.[1]);
  const hi = Number(m?.[2]);
  if (!m || lo < 1024 || hi > 65535 || hi - lo + 1 < 4) throw new Error(`${JSON.stringify(raw)} is not a port range LO-HI with 1024 <= LO, HI <= 65535 and at least 4 ports`);
  return `${lo}-${hi}`;
});
const filePath = parser('absolute path or empty', (raw: string): string => {
  const v = raw.trim();
  if (v !== '' && !v.startsWith('/')) throw new Error(`${JSON.stringify(raw)} is not an absolute path`);
  return v;
});

const imagePrefix = parser('image name prefix (a-z, 0-9, . _ / : -)', (raw: string): string => {
  if (!/^[a-z0-9._/:-]*$/.test(raw)) throw new Error(`${JSON.stringify(raw)} is not a Docker image name prefix`);
  return raw;
});

/** Every etcd setting of the agent, in the order of the manual's table (docs/reference/settings.rst, written from this list). */
export const SETTINGS: ReadonlyArray<SettingSpec<keyof Settings>> = [
  { key: 'heartbeat_interval', field: 'heartbeatIntervalSec', doc: 'seconds between heartbeats', default: 3, live: true, parse: number(0.1, 3600) },
  { key: 'image_prefix', field: 'imagePrefix', doc: 'prefix that turns a lang into an image name', see: 'Kernels', default: 'lablup/kernel-', live: true, parse: imagePrefix },
  {
    key: 'event_queue_limit',
    field: 'eventQueueLimit',
    doc: 'events held for a manager that is not reading; more are dropped and counted',
    default: 1000,
    live: false,
    parse: number(1, 1_000_000, true),
  },
  {
    key: 'rpc_max_message_bytes',
    field: 'rpcMaxMessageBytes',
    doc: "largest RPC message accepted (a larger one drops the peer's connection)",
    default: 1100 * 1024 * 1024,
    live: false,
    parse: number(1024, 4 * 1024 ** 3, true),
  },
  { key: 'create_concurrency', field: 'createConcurrency', doc: 'kernel creations running against Docker at once; more wait in order', default: 4, live: false, parse: number(1, 64, true) },
  { key: 'cpu_overcommit', field: 'cpuOvercommit', doc: 'how many kernels may share one CPU core (up to 256: many idle notebooks on a small node)', default: 1, live: false, parse: number(1, 256, true) },
  {
    key: 'destroy_timeout',
    field: 'destroyTimeoutSec',
    doc: 'seconds destroy_kernel may take to see the container gone (kill, force remove, retried) before it answers agent.DestroyPending', see: 'Kernels',
    default: 30,
    live: true,
    parse: number(1, 3600),
  },
  {
    key: 'scratch_reserve',
    field: 'scratchReserveMiB',
    doc: 'MiB the scratch root must have free for a new kernel; less refuses creates (retryable)', see: 'A full disk',
    default: 512,
    live: true,
    parse: number(0, 1024 * 1024 * 1024, true),
  },
  {
    key: 'scratch_type',
    field: 'scratchType',
    doc: 'what a kernel home is: hostdir (a folder), hostfile (a loop-mounted ext4 file of a size) or memory (a tmpfs of a size)',
    default: 'hostdir',
    live: false,
    parse: oneOf('hostdir', 'hostfile', 'memory'),
  },
  {
    key: 'scratch_size',
    field: 'scratchSizeMiB',
    doc: 'MiB of a hostfile or memory home when the create names no limits.scratch_mib',
    default: 1024,
    live: true,
    parse: number(8, 16 * 1024 * 1024, true),
  },
  {
    key: 'sync_grace',
    field: 'syncGraceSec',
    doc: 'seconds a kernel that sync_kernels does not list may stay before it is destroyed as not-found-in-manager (0 = report only)', see: 'Reconciliation',
    default: 0,
    live: true,
    parse: number(0, 7 * 24 * 3600),
  },
  {
    key: 'self_sync_interval',
    field: 'selfSyncIntervalSec',
    doc: "seconds between self-syncs of the kernel records against Docker's containers of this agent's label (0 = none)", see: 'Reconciliation',
    default: 60,
    live: true,
    parse: number(0, 24 * 3600),
  },
  { key: 'download_concurrency', field: 'downloadConcurrency', doc: 'download_file archives built at once; up to 16 more wait, then agent.InsufficientResources', see: 'Download memory', default: 2, live: false, parse: number(1, 64, true) },
  {
    key: 'mem_reserve',
    field: 'memReserveMiB',
    doc: "MiB of the node's memory kept for the OS and the agent, never promised to kernels", see: 'Memory accounting',
    default: 1024,
    live: true,
    parse: number(0, 1024 * 1024 * 1024, true),
  },
  {
    key: 'mem_overcommit',
    field: 'memOvercommit',
    doc: "ratio of the node's memory minus mem_reserve that kernels' memory limits may add up to", see: 'Memory accounting',
    default: 1,
    live: true,
    parse: number(0.1, 64),
  },
  { key: 'kernel_uid', field: 'kernelUid', doc: 'uid owning scratch homes and, for uid-match images, running the kernel', default: 1000, live: true, parse: number(1, 2 ** 31 - 1, true) },
  { key: 'max_upload_bytes', field: 'maxUploadBytes', doc: 'largest upload_file, in bytes', default: 100 * 1024 * 1024, live: true, parse: number(0, 1024 ** 3, true) },
  { key: 'max_download_bytes', field: 'maxDownloadBytes', doc: 'largest download_file archive, in bytes', default: 500 * 1024 * 1024, live: true, parse: number(0, 4 * 1024 ** 3, true) },
  { key: 'exec_timeout', field: 'execTimeoutSec', doc: "seconds a run may take before the kernel is destroyed (0 = the image's io.sorna.timeout label)", default: 0, live: true, parse: number(0, 7 * 24 * 3600) },
  {
    key: 'runner_ready_timeout',
    field: 'runnerReadyTimeoutSec',
    doc: "seconds a cold create (or restart) waits for the kernel's runner to answer %ping before it fails", see: 'Kernels',
    default: 10,
    live: true,
    parse: number(1, 600),
  },
  { key: 'rpc_keypair_file', field: 'rpcKeypairFile', doc: "the agent's CURVE key pair file (agent keygen); empty = RPC without CURVE (2018 managers)", see: 'Security', default: '', live: false, parse: filePath },
  {
    key: 'rpc_allowed_keys',
    field: 'rpcAllowedKeys',
    doc: 'Z85 public keys of the managers allowed to call when CURVE is on', see: 'Security',
    default: [],
    live: true,
    parse: list(/^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/, 'a Z85 public key (40 characters)'),
  },
  {
    key: 'callosum_curve_port',
    field: 'callosumCurvePort',
    doc: 'port of a second RPC socket with CURVE, for modern (Callosum) managers (0 = none)', see: 'Modern managers',
    default: 0,
    live: false,
    parse: number(0, 65535, true),
  },
  {
    key: 'callosum_keypair_file',
    field: 'callosumKeypairFile',
    doc: 'the CURVE key pair file of that socket (empty = rpc_keypair_file)', see: 'Modern managers',
    default: '',
    live: false,
    parse: filePath,
  },
  {
    key: 'callosum_manager_keys',
    field: 'callosumManagerKeys',
    doc: 'Z85 public keys of the modern managers allowed on that socket', see: 'Modern managers',
    default: [],
    live: true,
    parse: list(/^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/, 'a Z85 public key (40 characters)'),
  },
  { key: 'kernel_no_new_privileges', field: 'kernelNoNewPrivileges', doc: "kernels run with Docker's no-new-privileges", see: 'Security', default: true, live: true, parse: bool },
  {
    key: 'kernel_capabilities',
    field: 'kernelCapabilities',
    doc: 'capabilities kernels keep after dropping all; none, or docker-default to drop nothing', see: 'Security',
    default: DEFAULT_KERNEL_CAPABILITIES,
    live: true,
    parse: capabilities,
  },
  { key: 'kernel_seccomp', field: 'kernelSeccomp', doc: "default (Docker's seccomp profile) or unconfined (no filter, as the 2018 agent ran)", see: 'Security', default: 'default', live: true, parse: oneOf('default', 'unconfined') },
  { key: 'kernel_pids_limit', field: 'kernelPidsLimit', doc: 'processes and threads one kernel may hold (0 = unlimited)', see: 'Security', default: 1024, live: true, parse: number(0, 4_194_304, true) },
  { key: 'kernel_nofile_limit', field: 'kernelNofileLimit', doc: "open files per kernel process, soft and hard (0 = Docker's default)", see: 'Security', default: 4096, live: true, parse: number(0, 1_048_576, true) },
  {
    key: 'container_port_range',
    field: 'containerPortRange',
    doc: 'host ports every published kernel port (2000-2003 and service ports) comes from, LO-HI', see: 'Service ports and the host port range',
    default: '30000-31000',
    live: true,
    parse: portRange,
  },
  { key: 'port_reuse_cooldown', field: 'portReuseCooldownSec', doc: 'seconds a released host port waits before it is given out again', see: 'Service ports and the host port range', default: 60, live: true, parse: number(0, 24 * 3600) },
  { key: 'kernel_publish_addr', field: 'kernelPublishAddr', doc: 'host address kernel ports are published on (empty = the kernel host address)', see: 'Security', default: '', live: true, parse: address },
  {
    key: 'image_allow_list',
    field: 'imageAllowList',
    doc: 'full image names (name:tag) a lang may name besides <image_prefix><lang>',
    default: [],
    live: true,
    parse: list(/^[a-z0-9][a-z0-9._/:-]{0,254}:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/, 'an image name:tag'),
  },
  {
    key: 'gpu_allow',
    field: 'gpuAllow',
    doc: 'GPUs kernels may get, by index or UUID (empty = all usable ones)', see: 'GPUs',
    default: [],
    live: true,
    parse: list(/^(\d{1,4}|(GPU|MIG)-[0-9A-Fa-f-]{8,64})$/, 'a GPU index or UUID (GPU-...)'),
  },
  { key: 'auto_pull', field: 'autoPull', doc: "when a create pulls its image: missing (not here), digest (also when the registry's digest for the tag differs), never", see: 'Images', default: 'missing', live: true, parse: oneOf('missing', 'digest', 'never') },
  { key: 'pull_concurrency', field: 'pullConcurrency', doc: 'image pulls at once; more wait in order (one pull per image however many wait for it)', see: 'Images', default: 2, live: true, parse: number(1, 16, true) },
  { key: 'pull_timeout', field: 'pullTimeoutSec', doc: 'seconds a pull may take; then it is aborted and its waiters get agent.ImagePullFailed', see: 'Images', default: 600, live: true, parse: number(1, 24 * 3600) },
  {
    key: 'pull_space_margin',
    field: 'pullSpaceMarginBytes',
    doc: "free bytes kept on Docker's data root beyond 2 x the image's compressed size (manifest); less refuses the pull", see: 'Images',
    default: 1024 ** 3,
    live: true,
    parse: number(0, 2 ** 50, true),
  },
  { key: 'prepull', field: 'prepull', doc: 'langs (name:tag, resolved as create_kernel does) this node must have; missing ones are pulled in the background', see: 'Images', default: [], live: true, parse: list(/^[a-z0-9][a-z0-9._/:-]{0,254}:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/, 'a lang name:tag') },
  { key: 'prepull_before_running', field: 'prepullBeforeRunning', doc: 'wait for the prepull list before registering running', see: 'Images', default: false, live: false, parse: bool },
  { key: 'node_startup_script', field: 'nodeStartupScript', doc: 'host script run once at start before registering (root-owned, not group/world-writable); empty = none', see: 'Images', default: '', live: false, parse: filePath },
  { key: 'node_startup_timeout', field: 'nodeStartupTimeoutSec', doc: 'seconds the start-up script may run before it is killed', see: 'Images', default: 300, live: false, parse: number(1, 24 * 3600) },
  { key: 'node_startup_failure', field: 'nodeStartupFailure', doc: 'a failed start-up script: abort the start (exit 1) or continue with one warning line', see: 'Images', default: 'abort', live: false, parse: oneOf('abort', 'continue') },
  { key: 'workspace_template', field: 'workspaceTemplate', doc: 'host folder copied into each new scratch home (owned by kernel_uid, symlinks as links); empty = none', see: 'Per-kernel preparation', default: '', live: true, parse: filePath },
  {
    key: 'workspace_template_max_bytes',
    field: 'workspaceTemplateMaxBytes',
    doc: 'largest workspace template, bytes of file content', see: 'Per-kernel preparation',
    default: 100 * 1024 * 1024,
    live: true,
    parse: number(0, 2 ** 40, true),
  },
  {
    key: 'registration_lease_ttl',
    field: 'registrationLeaseTtlSec',
    doc: 'seconds the etcd lease holding the registration outlives a node cut off from etcd', see: 'Running a fleet',
    default: 15,
    live: false,
    parse: number(2, 3600, true),
  },
  { key: 'bootstrap_timeout', field: 'bootstrapTimeoutSec', doc: "seconds a create waits for the kernel's bootstrap_script", see: 'Per-kernel preparation', default: 600, live: true, parse: number(1, 24 * 3600) },
] as ReadonlyArray<SettingSpec<keyof Settings>>;

/** The defaults of every setting. */
export function defaultSettings(): Settings {
  return Object.fromEntries(SETTINGS.map((s) => [s.field, s.default])) as unknown as Settings;
}

/** One problem found while compiling; `source` is the etcd key that holds the bad value. */
export interface SettingProblem {
  source: string;
  field: keyof Settings;
  message: string;
}

/** What {@link compileSettings} returns: the settings, and what it had to reject or ignore. */
export interface CompiledSettings {
  settings: Settings;
  problems: SettingProblem[];
  /** Keys that are not settings of this agent (typos, or settings of a newer agent). */
  unknown: string[];
}

/**
 * Compiles settings from the cluster-wide and per-node key/value maps (keys
 * relative to their `config/` prefix); node values win. A bad value keeps the
 * default (or the cluster value) and is reported as a problem.
 */
export function compileSettings(
  cluster: Record<string, string>,
  node: Record<string, string>,
  prefixes = { cluster: 'config/agent/', node: 'nodes/agents/<id>/config/' },
): CompiledSettings {
  const out = defaultSettings() as unknown as Record<string, unknown>;
  const problems: SettingProblem[] = [];
  // Keys below `pool/` are the warm pool's, compiled by src/pool/settings.ts.
  const known = new Set(SETTINGS.map((s) => s.key));
  const isKnown = (k: string) => known.has(k) || k.startsWith('pool/');
  for (const spec of SETTINGS) {
    for (const [source, values] of [
      [prefixes.cluster, cluster],
      [prefixes.node, node],
    ] as const) {
      const raw = values[spec.key];
      if (raw === undefined) continue;
      try {
        out[spec.field] = spec.parse(raw);
      } catch (err) {
        problems.push({ source: source + spec.key, field: spec.field, message: `${(err as Error).message} (${spec.doc})` });
      }
    }
  }
  const unknown = [
    ...Object.keys(cluster).filter((k) => !isKnown(k)).map((k) => prefixes.cluster + k),
    ...Object.keys(node).filter((k) => !isKnown(k)).map((k) => prefixes.node + k),
  ];
  return { settings: out as unknown as Settings, problems, unknown };
}

/** The fields whose value differs between two settings objects, with whether each applies live. */
export function changedSettings(before: Settings, after: Settings): Array<{ key: string; live: boolean }> {
  return SETTINGS.filter((s) => JSON.stringify(before[s.field]) !== JSON.stringify(after[s.field])).map((s) => ({ key: s.key, live: s.live }));
}
