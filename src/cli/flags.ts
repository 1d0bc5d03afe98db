/**
 * The global flags of `agent` and `agentctl`, declared once: the commands
 * hand these to yargs, and the manual's flag table (docs/generate.ts) is
 * written from them. Each flag can also be given as an environment variable,
 * `<envPrefix>_<FLAG>` (`--etcd-addr` is `BACKEND_ETCD_ADDR`).
 */
import type { Argv, Options } from 'yargs';
import { DEFAULT_METRICS_PATH } from '../config/options.js';

/** FlagSpec is the declaration of one command-line flag. */
export interface FlagSpec {
  /** The flag without its dashes, e.g. `etcd-addr`. */
  readonly name: string;
  readonly type: 'string' | 'number' | 'boolean';
  /** The default yargs applies; absent: none, or one computed at start (`defaultText` says which). */
  readonly default?: string | number | boolean;
  /** What the default is when it is computed at start (shown instead of `default`). */
  readonly defaultText?: string;
  readonly describe: string;
  readonly choices?: readonly string[];
  /** The --help group. */
  readonly group?: string;
  /** A one-letter alias, e.g. `f` for `-f`. */
  readonly alias?: string;
  /** The command does not run without it. */
  readonly required?: boolean;
}

/** The flags of the agent daemon and `agent check` (environment variables `BACKEND_*`). */
export const AGENT_FLAGS: readonly FlagSpec[] = [
  {
    name: 'etcd-addr',
    type: 'string',
    default: '127.0.0.1:2379',
    describe: 'etcd v3 endpoints, HOST:PORT[,HOST:PORT...], IPv6 in brackets (the members of the cluster)',
    group: 'Cluster:',
  },
  {
    name: 'namespace',
    type: 'string',
    default: 'local',
    describe: 'etcd namespace: keys live under /sorna/<namespace>/',
    group: 'Cluster:',
  },
  { name: 'agent-id', type: 'string', defaultText: 'i-<hostname>', describe: 'id of this agent in etcd and events', group: 'Cluster:' },
  { name: 'region', type: 'string', default: 'local', describe: 'region reported in heartbeats', group: 'Cluster:' },
  { name: 'agent-port', type: 'number', default: 6001, describe: 'TCP port of the RPC socket the manager connects to', group: 'Network:' },
  { name: 'bind-host', type: 'string', default: '*', describe: 'address the RPC socket binds (* = all interfaces)', group: 'Network:' },
  {
    name: 'agent-host-override',
    type: 'string',
    defaultText: 'first non-loopback IPv4',
    describe: 'address the manager should use to reach this agent (heartbeat addr, etcd ip)',
    group: 'Network:',
  },
  {
    name: 'kernel-host-override',
    type: 'string',
    defaultText: 'the agent address',
    describe: 'address clients should use to reach kernel ports (published there, reported as kernel_host)',
    group: 'Network:',
  },
  {
    name: 'scratch-root',
    type: 'string',
    default: '/var/cache/scratches',
    describe: "directory holding each kernel's home; must exist and be writable",
    group: 'Kernels:',
  },
  {
    name: 'idle-timeout',
    type: 'number',
    default: 600,
    describe: 'seconds a kernel may stay unused before it is destroyed with reason idle-timeout (0 = never)',
    group: 'Kernels:',
  },
  {
    name: 'metrics',
    type: 'string',
    default: DEFAULT_METRICS_PATH,
    describe: 'Prometheus text file written for node_exporter\'s textfile collector, rewritten atomically every 2 s ("" = none)',
    group: 'Metrics:',
  },
  {
    name: 'metrics-port',
    type: 'number',
    default: 0,
    describe: 'TCP port serving GET /metrics on --bind-host (0 = off)',
    group: 'Metrics:',
  },
  {
    name: 'log-level',
    type: 'string',
    default: 'info',
    choices: ['error', 'warn', 'info', 'debug'],
    describe: 'least severe log level printed',
    group: 'Logging:',
  },
  {
    name: 'log-format',
    type: 'string',
    default: 'text',
    choices: ['text', 'json'],
    describe: 'text for a terminal, json (one object per line) for log collectors',
    group: 'Logging:',
  },
];

/** The flags `agent check` takes besides {@link AGENT_FLAGS}. */
export const CHECK_FLAGS: readonly FlagSpec[] = [
  {
    name: 'json',
    type: 'boolean',
    default: false,
    describe:
      "print one JSON document instead of the checklist: ok, summary, and each check's name, status (ok, warn, fail), message and fix",
  },
];

/** The flags of the agent's other commands (these read no environment variables). */
export const AGENT_COMMAND_FLAGS: Readonly<Record<'gpus' | 'methods' | 'keygen', readonly FlagSpec[]>> = {
  gpus: [
    { name: 'json', type: 'boolean', default: false, describe: 'print the detection as JSON' },
    {
      name: 'allow',
      type: 'string',
      default: '',
      describe: 'GPUs to consider, as gpu_allow takes them (indexes or UUIDs, comma-separated; empty = all)',
    },
  ],
  methods: [
    { name: 'modern', type: 'boolean', default: false, describe: 'list the methods served to modern (Callosum, 24.09) managers instead' },
  ],
  keygen: [{ name: 'out', type: 'string', required: true, describe: 'file to write; an existing file is not overwritten' }],
};

/** The global flags of agentctl (environment variables `AGENTCTL_*`). */
export const AGENTCTL_FLAGS: readonly FlagSpec[] = [
  { name: 'agent', type: 'string', defaultText: 'found in etcd', describe: 'RPC address of the agent, tcp://HOST:PORT', group: 'Agent:' },
  {
    name: 'etcd-addr',
    type: 'string',
    default: '127.0.0.1:2379',
    describe: 'etcd v3 endpoints, HOST:PORT[,HOST:PORT...] (the members of the cluster)',
    group: 'Agent:',
  },
  { name: 'namespace', type: 'string', default: 'local', describe: 'etcd namespace of the cluster', group: 'Agent:' },
  { name: 'agent-id', type: 'string', describe: 'which registered agent, when several are', group: 'Agent:' },
  { name: 'timeout', type: 'number', default: 10, describe: 'seconds to wait for a reply to a quick call', group: 'Agent:' },
  {
    name: 'callosum',
    type: 'boolean',
    default: false,
    describe: 'speak Callosum 1.x as a modern (24.09) manager does (ping, call)',
    group: 'Agent:',
  },
  { name: 'json', type: 'boolean', default: false, describe: 'print JSON instead of text (read commands)' },
];

/** The flags of agentctl's commands, by command (like the global ones, each is also an `AGENTCTL_*` variable). */
export const AGENTCTL_COMMAND_FLAGS: Readonly<
  Record<
    'run' | 'events' | 'download' | 'destroy' | 'reset' | 'images rm' | 'images gc' | 'open' | 'drain' | 'undrain' | 'commit',
    readonly FlagSpec[]
  >
> = {
  run: [
    { name: 'file', alias: 'f', type: 'string', describe: 'read the code from FILE' },
    { name: 'kernel', type: 'string', describe: 'run in this existing kernel instead of creating one (it is kept)' },
    { name: 'keep', type: 'boolean', default: false, describe: 'keep the created kernel after the run (its id goes to stderr)' },
    { name: 'cpu', type: 'number', default: 1, describe: 'cores of the created kernel' },
    { name: 'mem', type: 'number', default: 256, describe: 'memory of the created kernel, MiB' },
    { name: 'gpu', type: 'number', default: 0, describe: 'GPUs of the created kernel (whole devices)' },
  ],
  events: [
    { name: 'bind', type: 'string', default: 'tcp://127.0.0.1:*', describe: 'where the event sink binds (port * = any free port)' },
    { name: 'advertise', type: 'string', defaultText: 'the bound address', describe: 'HOST:PORT the agents should send to' },
    { name: 'manager-id', type: 'string', defaultText: 'agentctl-<host>-<pid>', describe: 'value put in nodes/manager' },
    { name: 'count', type: 'number', describe: 'exit after this many events' },
  ],
  download: [
    {
      name: 'output',
      alias: 'o',
      type: 'string',
      defaultText: 'its base name, + .tar for an archive',
      describe: 'where to write it; - for stdout',
    },
    { name: 'tar', type: 'boolean', default: false, describe: 'write the tar archive as the agent sends it, even for one file' },
  ],
  destroy: [{ name: 'reason', type: 'string', default: 'user-requested', describe: 'reason sent in kernel_terminated' }],
  reset: [{ name: 'yes', type: 'boolean', default: false, describe: 'required: confirms that every kernel goes' }],
  drain: [
    {
      name: 'deadline',
      type: 'number',
      defaultText: 'none: kernels run until they end',
      describe: 'seconds after which the kernels still running are destroyed (reason node-drain)',
    },
    {
      name: 'etcd',
      type: 'boolean',
      default: false,
      describe: "write the node's drain key in etcd instead of calling the agent (it need not be reachable; --agent-id names it)",
    },
  ],
  undrain: [
    { name: 'etcd', type: 'boolean', default: false, describe: "delete the node's drain key in etcd instead of calling the agent" },
  ],
  commit: [
    {
      name: 'background',
      type: 'boolean',
      default: false,
      describe: 'return once the commit has started (the get_commit_status call says when it is done) instead of waiting for the image',
    },
  ],
  'images rm': [{ name: 'force', type: 'boolean', default: false, describe: 'also remove images that idle pooled containers use' }],
  'images gc': [{ name: 'dry-run', type: 'boolean', default: false, describe: 'list what would be removed, in order, and remove nothing' }],
  open: [
    { name: 'forward', type: 'number', describe: 'serve the app on this local port through agentctl (runs until Ctrl-C)' },
    { name: 'bind', type: 'string', default: '127.0.0.1', describe: 'address --forward listens on' },
  ],
};

/** The environment variable of a flag: `envVar('BACKEND', 'etcd-addr')` is `BACKEND_ETCD_ADDR`. */
export function envVar(prefix: string, flag: string): string {
  return `${prefix}_${flag.replace(/-/g, '_').toUpperCase()}`;
}

/** Adds the flags to a yargs parser, as yargs options. */
export function addFlags<T, U = unknown>(y: Argv<T>, flags: readonly FlagSpec[]): Argv<T & U> {
  let out = y as Argv<unknown>;
  for (const f of flags) {
    const o: Options = { type: f.type, describe: f.defaultText ? `${f.describe} [default: ${f.defaultText}]` : f.describe };
    if (f.default !== undefined) o.default = f.default;
    if (f.choices) o.choices = [...f.choices];
    if (f.group) o.group = f.group;
    if (f.alias) o.alias = f.alias;
    if (f.required) o.demandOption = true;
    out = out.option(f.name, o);
  }
  return out as Argv<T & U>;
}
