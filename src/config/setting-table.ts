/**
 * The table of the agent's etcd settings (docs/wire-contract.rst, "etcd"): every key,
 * its field, type, default and limits, declared once. The {@link Settings}
 * type is derived from it, and each row is declared with {@link setting}, so
 * a default that is not what its parser gives fails to compile.
 * src/config/settings.ts compiles etcd's values with it.
 */
import { Z85_KEY } from '../wire/z85.js';
import {
  address,
  bool,
  filePath,
  imagePrefix,
  langList,
  list,
  number,
  oneOf,
  parser,
  portRange,
  type SettingParser,
} from './setting-parsers.js';

/** SettingSpec is the declaration of one etcd setting: the manual's settings table is written from these. */
export interface SettingSpec<F extends string = string, T = unknown> {
  /** Key below `config/agent/` (cluster) and `nodes/agents/<id>/config/` (node). */
  readonly key: string;
  /** The field of {@link Settings} that holds the compiled value. */
  readonly field: F;
  /** What the setting means, in plain text (it goes into --help, error messages and the manual). */
  readonly doc: string;
  readonly default: T;
  /** Whether a change applies while running; otherwise it applies at the next start. */
  readonly live: boolean;
  readonly parse: SettingParser<T>;
  /** The manual section that tells more, by its title. */
  readonly see?: string;
}

/** Declares one setting; `default` must be of the type `parse` gives (NoInfer: the parser alone decides it). */
function setting<const F extends string, T>(spec: {
  key: string;
  field: F;
  doc: string;
  default: NoInfer<T>;
  live: boolean;
  parse: SettingParser<T>;
  see?: string;
}): SettingSpec<F, T> {
  return spec;
}

/**
 * The capabilities kernels keep by default: what an image's entrypoint needs,
 * as root, to set up the kernel user and switch to it (docs/security.rst):
 * SETUID and SETGID to switch; CHOWN for `useradd` (which gives /etc/shadow
 * back to group shadow) and `chown -R` of the home, DAC_OVERRIDE for that
 * chown to enter the home's directories of other users, as the 2018
 * Backend.AI entrypoints do. User code keeps none of them (no new privileges).
 */
export const DEFAULT_KERNEL_CAPABILITIES = ['SETUID', 'SETGID', 'CHOWN', 'DAC_OVERRIDE'];

const capabilities = parser('capability names (commas or spaces between), none, or docker-default', (raw: string): string[] | null => {
  if (raw.trim() === 'docker-default') return null;
  if (raw.trim() === '' || raw.trim() === 'none') return [];
  return list(/^(CAP_)?[A-Z_]{2,32}$/, 'a capability name such as SETUID')(raw.toUpperCase()).map((c) => c.replace(/^CAP_/, ''));
});

const z85Keys = list(Z85_KEY, 'a Z85 public key (40 characters)');

/** Every etcd setting of the agent, in the order of the manual's table (docs/reference/settings.rst, written from this list). */
export const SETTINGS = [
  setting({
    key: 'heartbeat_interval',
    field: 'heartbeatIntervalSec',
    doc: 'seconds between heartbeats',
    default: 3,
    live: true,
    parse: number(0.1, 3600),
  }),
  setting({
    key: 'image_prefix',
    field: 'imagePrefix',
    doc: 'prefix that turns a lang into an image name',
    see: 'Kernels',
    default: 'lablup/kernel-',
    live: true,
    parse: imagePrefix,
  }),
  setting({
    key: 'event_queue_limit',
    field: 'eventQueueLimit',
    doc: 'events held for a manager that is not reading; more are dropped and counted',
    default: 1000,
    live: false,
    parse: number(1, 1_000_000, true),
  }),
  setting({
    key: 'rpc_max_message_bytes',
    field: 'rpcMaxMessageBytes',
    doc: "largest RPC message accepted (a larger one drops the peer's connection)",
    default: 1100 * 1024 * 1024,
    live: false,
    parse: number(1024, 4 * 1024 ** 3, true),
  }),
  setting({
    key: 'create_concurrency',
    field: 'createConcurrency',
    doc: 'kernel creations running against Docker at once; more wait in order',
    default: 4,
    live: false,
    parse: number(1, 64, true),
  }),
  setting({
    key: 'cpu_overcommit',
    field: 'cpuOvercommit',
    doc: 'how many kernels may share one CPU core (up to 256: many idle notebooks on a small node)',
    default: 1,
    live: false,
    parse: number(1, 256, true),
  }),
  setting({
    key: 'destroy_timeout',
    field: 'destroyTimeoutSec',
    doc: 'seconds destroy_kernel may take to see the container gone (kill, force remove, retried) before it answers agent.DestroyPending',
    see: 'Kernels',
    default: 30,
    live: true,
    parse: number(1, 3600),
  }),
  setting({
    key: 'scratch_reserve',
    field: 'scratchReserveMiB',
    doc: "MiB the scratch root must keep free beyond a new kernel's home (a hostfile home's size), and the same share of its inodes; less refuses creates (retryable)",
    see: 'A full disk',
    default: 512,
    live: true,
    parse: number(0, 1024 * 1024 * 1024, true),
  }),
  setting({
    key: 'scratch_type',
    field: 'scratchType',
    doc: 'what a kernel home is: hostdir (a folder), hostfile (a loop-mounted ext4 file of a size, allocated in full) or memory (a tmpfs of a size, charged to the memory book)',
    default: 'hostdir',
    live: false,
    parse: oneOf('hostdir', 'hostfile', 'memory'),
  }),
  setting({
    key: 'scratch_size',
    field: 'scratchSizeMiB',
    doc: 'MiB of a hostfile or memory home when the create names no limits.scratch_mib',
    default: 1024,
    live: true,
    parse: number(8, 16 * 1024 * 1024, true),
  }),
  setting({
    key: 'sync_grace',
    field: 'syncGraceSec',
    doc: 'seconds a kernel that sync_kernels does not list may stay before it is destroyed as not-found-in-manager (0 = report only)',
    see: 'Reconciliation',
    default: 0,
    live: true,
    parse: number(0, 7 * 24 * 3600),
  }),
  setting({
    key: 'self_sync_interval',
    field: 'selfSyncIntervalSec',
    doc: "seconds between self-syncs of the kernel records against Docker's containers of this agent's label (0 = none)",
    see: 'Reconciliation',
    default: 60,
    live: true,
    parse: number(0, 24 * 3600),
  }),
  setting({
    key: 'download_concurrency',
    field: 'downloadConcurrency',
    doc: 'download_file archives built at once; up to 16 more wait, then agent.InsufficientResources',
    see: 'Download memory',
    default: 2,
    live: false,
    parse: number(1, 64, true),
  }),
  setting({
    key: 'mem_reserve',
    field: 'memReserveMiB',
    doc: "MiB of the node's memory kept for the OS and the agent, never promised to kernels",
    see: 'Memory accounting',
    default: 1024,
    live: true,
    parse: number(0, 1024 * 1024 * 1024, true),
  }),
  setting({
    key: 'mem_overcommit',
    field: 'memOvercommit',
    doc: "ratio of the node's memory minus mem_reserve that kernels' memory limits may add up to",
    see: 'Memory accounting',
    default: 1,
    live: true,
    parse: number(0.1, 64),
  }),
  setting({
    key: 'kernel_uid',
    field: 'kernelUid',
    doc: 'uid owning scratch homes and, for uid-match images, running the kernel',
    default: 1000,
    live: true,
    parse: number(1, 2 ** 31 - 1, true),
  }),
  setting({
    key: 'max_upload_bytes',
    field: 'maxUploadBytes',
    doc: 'largest upload_file, in bytes',
    default: 100 * 1024 * 1024,
    live: true,
    parse: number(0, 1024 ** 3, true),
  }),
  setting({
    key: 'max_download_bytes',
    field: 'maxDownloadBytes',
    doc: 'largest download_file archive, in bytes',
    default: 500 * 1024 * 1024,
    live: true,
    parse: number(0, 4 * 1024 ** 3, true),
  }),
  setting({
    key: 'exec_timeout',
    field: 'execTimeoutSec',
    doc: "seconds a run may take before the kernel is destroyed (0 = the image's io.sorna.timeout label)",
    default: 0,
    live: true,
    parse: number(0, 7 * 24 * 3600),
  }),
  setting({
    key: 'runner_ready_timeout',
    field: 'runnerReadyTimeoutSec',
    doc: "seconds a cold create (or restart) waits for the kernel's runner to answer a status request before it fails",
    see: 'Kernels',
    default: 10,
    live: true,
    parse: number(1, 600),
  }),
  setting({
    key: 'rpc_keypair_file',
    field: 'rpcKeypairFile',
    doc: "the agent's CURVE key pair file (agent keygen); empty = RPC without CURVE (2018 managers)",
    see: 'Security',
    default: '',
    live: false,
    parse: filePath,
  }),
  setting({
    key: 'rpc_allowed_keys',
    field: 'rpcAllowedKeys',
    doc: 'Z85 public keys of the managers allowed to call when CURVE is on',
    see: 'Security',
    default: [],
    live: true,
    parse: z85Keys,
  }),
  setting({
    key: 'callosum_curve_port',
    field: 'callosumCurvePort',
    doc: 'port of a second RPC socket with CURVE, for modern (Callosum) managers (0 = none)',
    see: 'Modern managers',
    default: 0,
    live: false,
    parse: number(0, 65535, true),
  }),
  setting({
    key: 'callosum_keypair_file',
    field: 'callosumKeypairFile',
    doc: 'the CURVE key pair file of that socket (empty = rpc_keypair_file)',
    see: 'Modern managers',
    default: '',
    live: false,
    parse: filePath,
  }),
  setting({
    key: 'callosum_manager_keys',
    field: 'callosumManagerKeys',
    doc: 'Z85 public keys of the modern managers allowed on that socket',
    see: 'Modern managers',
    default: [],
    live: true,
    parse: z85Keys,
  }),
  setting({
    key: 'kernel_no_new_privileges',
    field: 'kernelNoNewPrivileges',
    doc: "kernels run with Docker's no-new-privileges",
    see: 'Security',
    default: true,
    live: true,
    parse: bool,
  }),
  setting({
    key: 'kernel_capabilities',
    field: 'kernelCapabilities',
    doc: 'capabilities kernels keep after dropping all; none, or docker-default to drop nothing',
    see: 'Security',
    default: DEFAULT_KERNEL_CAPABILITIES,
    live: true,
    parse: capabilities,
  }),
  setting({
    key: 'kernel_seccomp',
    field: 'kernelSeccomp',
    doc: "default (Docker's seccomp profile) or unconfined (no filter, as the 2018 agent ran)",
    see: 'Security',
    default: 'default',
    live: true,
    parse: oneOf('default', 'unconfined'),
  }),
  setting({
    key: 'kernel_pids_limit',
    field: 'kernelPidsLimit',
    doc: 'processes and threads one kernel may hold (0 = unlimited)',
    see: 'Security',
    default: 1024,
    live: true,
    parse: number(0, 4_194_304, true),
  }),
  setting({
    key: 'kernel_nofile_limit',
    field: 'kernelNofileLimit',
    doc: "open files per kernel process, soft and hard (0 = Docker's default)",
    see: 'Security',
    default: 4096,
    live: true,
    parse: number(0, 1_048_576, true),
  }),
  setting({
    key: 'container_port_range',
    field: 'containerPortRange',
    doc: 'host ports every published kernel port (2000-2003 and service ports) comes from, LO-HI',
    see: 'Service ports and the host port range',
    default: '30000-31000',
    live: true,
    parse: portRange,
  }),
  setting({
    key: 'port_reuse_cooldown',
    field: 'portReuseCooldownSec',
    doc: 'seconds a released host port waits before it is given out again',
    see: 'Service ports and the host port range',
    default: 60,
    live: true,
    parse: number(0, 24 * 3600),
  }),
  setting({
    key: 'kernel_isolation',
    field: 'kernelIsolation',
    doc: "on: the agent's firewall chains keep kernels from the host and from each other (start fails where they cannot be installed); off: no chains",
    see: 'Kernel networks',
    default: 'on',
    live: false,
    parse: oneOf('on', 'off'),
  }),
  setting({
    key: 'kernel_egress',
    field: 'kernelEgress',
    doc: 'allow: kernels may open connections beyond the node; deny: they reach nothing beyond their own container',
    see: 'Kernel networks',
    default: 'allow',
    live: false,
    parse: oneOf('allow', 'deny'),
  }),
  setting({
    key: 'kernel_publish_addr',
    field: 'kernelPublishAddr',
    doc: 'host address kernel ports are published on (empty = the kernel host address)',
    see: 'Security',
    default: '',
    live: true,
    parse: address,
  }),
  setting({
    key: 'image_allow_list',
    field: 'imageAllowList',
    doc: 'full image names (name:tag, a registry host allowed) a lang may name besides <image_prefix><lang>',
    default: [],
    live: true,
    parse: langList,
  }),
  setting({
    key: 'gpu_allow',
    field: 'gpuAllow',
    doc: 'GPUs kernels may get, by index or UUID (empty = all usable ones)',
    see: 'GPUs',
    default: [],
    live: true,
    parse: list(/^(\d{1,4}|(GPU|MIG)-[0-9A-Fa-f-]{8,64})$/, 'a GPU index or UUID (GPU-...)'),
  }),
  setting({
    key: 'auto_pull',
    field: 'autoPull',
    doc: "when a create pulls its image: missing (not here), digest (also when the registry's digest for the tag differs), never",
    see: 'Images',
    default: 'missing',
    live: true,
    parse: oneOf('missing', 'digest', 'never'),
  }),
  setting({
    key: 'pull_concurrency',
    field: 'pullConcurrency',
    doc: 'image pulls at once; more wait in order (one pull per image however many wait for it)',
    see: 'Images',
    default: 2,
    live: true,
    parse: number(1, 16, true),
  }),
  setting({
    key: 'pull_timeout',
    field: 'pullTimeoutSec',
    doc: 'seconds a pull may take; then it is aborted and its waiters get agent.ImagePullFailed',
    see: 'Images',
    default: 600,
    live: true,
    parse: number(1, 24 * 3600),
  }),
  setting({
    key: 'pull_space_margin',
    field: 'pullSpaceMarginBytes',
    doc: "free bytes kept on Docker's data root beyond 2 x the image's compressed size (manifest); less refuses the pull",
    see: 'Images',
    default: 1024 ** 3,
    live: true,
    parse: number(0, 2 ** 50, true),
  }),
  setting({
    key: 'prepull',
    field: 'prepull',
    doc: 'langs (name:tag, resolved as create_kernel does) this node must have; missing ones are pulled in the background',
    see: 'Images',
    default: [],
    live: true,
    parse: langList,
  }),
  setting({
    key: 'prepull_before_running',
    field: 'prepullBeforeRunning',
    doc: 'wait for the prepull list before registering running',
    see: 'Images',
    default: false,
    live: false,
    parse: bool,
  }),
  setting({
    key: 'node_startup_script',
    field: 'nodeStartupScript',
    doc: 'host script run once at start before registering (root-owned, not group/world-writable); empty = none',
    see: 'Images',
    default: '',
    live: false,
    parse: filePath,
  }),
  setting({
    key: 'node_startup_timeout',
    field: 'nodeStartupTimeoutSec',
    doc: 'seconds the start-up script may run before it is killed',
    see: 'Images',
    default: 300,
    live: false,
    parse: number(1, 24 * 3600),
  }),
  setting({
    key: 'node_startup_failure',
    field: 'nodeStartupFailure',
    doc: 'a failed start-up script: abort the start (exit 1) or continue with one warning line',
    see: 'Images',
    default: 'abort',
    live: false,
    parse: oneOf('abort', 'continue'),
  }),
  setting({
    key: 'workspace_template',
    field: 'workspaceTemplate',
    doc: 'host folder copied into each new scratch home (owned by kernel_uid, symlinks as links); empty = none',
    see: 'Per-kernel preparation',
    default: '',
    live: true,
    parse: filePath,
  }),
  setting({
    key: 'workspace_template_max_bytes',
    field: 'workspaceTemplateMaxBytes',
    doc: 'largest workspace template, bytes of file content',
    see: 'Per-kernel preparation',
    default: 100 * 1024 * 1024,
    live: true,
    parse: number(0, 2 ** 40, true),
  }),
  setting({
    key: 'registration_lease_ttl',
    field: 'registrationLeaseTtlSec',
    doc: 'seconds the etcd lease holding the registration outlives a node cut off from etcd',
    see: 'Running a fleet',
    default: 15,
    live: false,
    parse: number(2, 3600, true),
  }),
  setting({
    key: 'stats_interval',
    field: 'statsIntervalSec',
    doc: "seconds between the kernels' stats written to the managers' Redis (0 = none; the 2018 and modern agents wrote every 5 s)",
    see: 'Stats in Redis',
    default: 5,
    live: true,
    parse: number(0, 3600),
  }),
  setting({
    key: 'stats_read_timeout',
    field: 'statsReadTimeoutSec',
    doc: "seconds one kernel's stats read may take; a read that takes longer leaves that kernel's figures unknown for the round, never 0",
    see: 'Stats in Redis',
    default: 2,
    live: true,
    parse: number(0.05, 60),
  }),
  setting({
    key: 'stats_expiry',
    field: 'statsExpirySec',
    doc: "seconds a kernel's stats stay in Redis after their last write (the 2018 agent: 30), so that nothing is left behind",
    see: 'Stats in Redis',
    default: 30,
    live: true,
    parse: number(5, 7 * 24 * 3600, true),
  }),
  setting({
    key: 'destroy_abandoned_creates',
    field: 'destroyAbandonedCreates',
    doc: 'destroy a kernel made by create_kernel or restart_kernel whose reply could not be delivered because the caller is gone (reason create-abandoned); off for managers that re-ask by id',
    see: 'Abandoned creates',
    default: true,
    live: true,
    parse: bool,
  }),
  setting({
    key: 'bootstrap_timeout',
    field: 'bootstrapTimeoutSec',
    doc: "seconds a create waits for the kernel's bootstrap_script",
    see: 'Per-kernel preparation',
    default: 600,
    live: true,
    parse: number(1, 24 * 3600),
  }),
] as const;

/** Settings are the compiled values of the `config/agent/...` keys: one field per row of {@link SETTINGS}, of the type its parser gives. */
export type Settings = { [R in (typeof SETTINGS)[number] as R['field']]: R extends SettingSpec<string, infer T> ? T : never };
