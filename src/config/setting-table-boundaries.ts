/**
 * The settings of the agent's boundaries, a part of the settings table
 * (setting-table.ts, which places them in the manual's order): who may call
 * (RPC and Callosum keys), what a kernel may do (its lock-down), and what it
 * may reach (the host port range, kernel networks, the publish address).
 */
import { Z85_KEY } from '../wire/z85.js';
import { address, bool, filePath, list, number, oneOf, parser, portRange } from './setting-parsers.js';
import { setting } from './setting-spec.js';

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

/** The boundary settings, in the order of the manual's table. */
export const BOUNDARY_SETTINGS = [
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
    key: 'kernel_log_max_size',
    field: 'kernelLogMaxMiB',
    doc: "MiB of a kernel container's log file (Docker's json-file driver) before Docker rotates it; a kernel's log never holds more than kernel_log_max_size x kernel_log_max_files on disk: by default 5 MiB x 2 = 10 MiB a kernel, 2.9 GiB for a node of 300 kernels",
    see: 'Kernel logs',
    default: 5,
    live: true,
    parse: number(1, 1024, true),
  }),
  setting({
    key: 'kernel_log_max_files',
    field: 'kernelLogMaxFiles',
    doc: 'log files a kernel container keeps: the one being written and those rotated before it (the oldest is deleted)',
    see: 'Kernel logs',
    default: 2,
    live: true,
    parse: number(1, 32, true),
  }),
  setting({
    key: 'kernel_shm_size',
    field: 'kernelShmMiB',
    doc: "MiB of a kernel's /dev/shm when the create names none (a modern manager's resource_opts.shmem): a tmpfs whose pages count against the kernel's memory limit, so a large size costs nothing until used and never holds more than that limit; Docker's default of 64 MiB breaks PyTorch data loaders, whose workers pass batches through it",
    see: 'Shared memory',
    default: 1024,
    live: true,
    parse: number(1, 16 * 1024 * 1024, true),
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
];
