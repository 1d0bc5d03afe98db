/**
 * Writes the manual's reference tables (docs/reference/*.rst) from the code's
 * own declarations, so that a new flag, setting, method, event or metric
 * appears in the manual without a hand edit:
 *
 * - flags.rst: the yargs flags of `agent` and `agentctl` (src/cli/flags.ts);
 * - settings.rst: the etcd settings (src/config/setting-table.ts SETTINGS) and the
 *   warm pool's keys (src/pool/settings.ts POOL_SETTINGS);
 * - methods.rst and modern-methods.rst: the RPC method tables, as
 *   `agent methods` lists them (src/rpc/methods.ts, src/rpc/modern-methods.ts);
 * - modern-config.rst: the modern kernel creation config (MODERN_CONFIG_KEYS);
 * - events.rst: the events (src/events/catalogue.ts);
 * - metrics.rst: the Prometheus metrics as AgentMetrics registers them;
 * - layers.rst: the floor plan of src/ (layers.cjs, the list that
 *   .dependency-cruiser.cjs also checks the imports against).
 * - errors.rst: the wire errors, from the error classes (src/errors.ts
 *   WIRE_ERROR_CLASSES), their aiozmq names and their Callosum form
 *   (src/rpc/callosum-failure.ts); error-names.inc: the same table alone,
 *   which docs/wire-contract.rst includes.
 *
 * `node dist/docs/generate.js` (npm run docs:gen) writes them;
 * `--check` only says which differ (exit 1). tests/unit/docs.test.ts fails
 * when the checked-in files differ from what this produces.
 */
import { promises as fs, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AGENT_COMMAND_FLAGS,
  AGENT_FLAGS,
  AGENTCTL_COMMAND_FLAGS,
  AGENTCTL_FLAGS,
  CHECK_FLAGS,
  envVar,
  type FlagSpec,
} from '../src/cli/flags.js';
import { SETTINGS } from '../src/config/setting-table.js';
import { POOL_DEFAULTS, POOL_SETTINGS } from '../src/pool/settings.js';
import { methods } from '../src/rpc/methods.js';
import { listMethods, type MethodListing } from '../src/rpc/listing.js';
import { modernMethods, modernNotServed } from '../src/rpc/modern-methods.js';
import { MODERN_CONFIG_KEYS } from '../src/kernels/modern-spec.js';
import { AGENT_EVENTS, MODERN_EVENTS, type EventSpec } from '../src/events/catalogue.js';
import { AgentMetrics } from '../src/metrics/metrics.js';
import { silentLogger } from '../src/log.js';
import { ArgumentsError, ImpossibleRequestError, WIRE_ERROR_CLASSES, type WireErrorClass } from '../src/errors.js';
import { callosumFailure } from '../src/rpc/callosum-failure.js';

/** Plain text made safe for reStructuredText (no markup is recognised in it; URIs such as `tcp://HOST:PORT` become literals). */
export function text(s: string): string {
  const escape = (t: string) =>
    t
      .replace(/\\/g, '\\\\')
      .replace(/([*`|])/g, '\\$1')
      .replace(/(?<=\w)_(?=\W|$)/g, '\\_');
  return s
    .split(/(\b[a-z][a-z0-9+.-]*:\/\/[^\s,;)]+)/)
    .map((part, i) => (i % 2 === 1 ? lit(part) : escape(part)))
    .join('');
}

/** An inline literal. */
function lit(s: string): string {
  return s === '' ? 'empty' : `\`\`${s.replace(/`/g, "'")}\`\``;
}

/** The manual's section titles (docs/*.rst, chapter titles first), each with its file and anchor. */
function sectionIndex(): Map<string, string> {
  const out = new Map<string, string>();
  const later: Array<[string, string]> = [];
  for (const file of readdirSync(DOCS_DIR)
    .filter((f) => f.endsWith('.rst'))
    .sort()) {
    const lines = readFileSync(path.join(DOCS_DIR, file), 'utf8').split('\n');
    for (let i = 1; i < lines.length; i++) {
      const m = /^([=~-])\1{2,}$/.exec(lines[i]!);
      const title = lines[i - 1]!.trim();
      if (!m || title === '' || /^[=~-]+$/.test(title)) continue;
      const anchor = title
        .replace(/``/g, '')
        .toLowerCase()
        .replace(/[^a-z0-9 _-]/g, '')
        .trim()
        .replace(/[ _]+/g, '-')
        .replace(/-+/g, '-');
      if (m[1] === '=') out.set(title, `../${file}`);
      else later.push([title, `../${file}#${anchor}`]);
    }
  }
  for (const [title, where] of later) if (!out.has(title)) out.set(title, where);
  return out;
}

let sections: Map<string, string> | null = null;

/** A link to the manual's section of that title (a link that works on a code host and, through conf.py, in the HTML). */
function ref(title: string): string {
  sections ??= sectionIndex();
  const where = sections.get(title);
  if (!where) throw new Error(`docs/generate.ts: no section titled ${JSON.stringify(title)} in docs/*.rst`);
  return `\`${title} <${where}>\`__`;
}

function header(source: string): string {
  return `.. This file is written by docs/generate.ts (npm run docs:gen) from ${source}: do not edit it by hand.\n\n`;
}

function title(t: string, ch = '='): string {
  return `${t}\n${ch.repeat(t.length)}\n\n`;
}

/** A list-table; each cell is reStructuredText (one or more lines). */
function table(headers: string[], rows: string[][], widths?: number[]): string {
  const cell = (c: string, first: boolean) => {
    const lines = (c === '' ? '-' : c).split('\n');
    return `   ${first ? '* -' : '  -'} ${lines[0]}${lines
      .slice(1)
      .map((l) => (l === '' ? '\n' : `\n       ${l}`))
      .join('')}`;
  };
  const row = (r: string[]) => r.map((c, i) => cell(c, i === 0)).join('\n');
  return (
    [
      '.. list-table::',
      '   :header-rows: 1',
      ...(widths ? [`   :widths: ${widths.join(' ')}`] : []),
      '',
      row(headers),
      ...rows.map(row),
      '',
    ].join('\n') + '\n'
  );
}

function defaultOf(v: unknown): string {
  if (v === null) return lit('docker-default');
  if (Array.isArray(v)) return v.length === 0 ? 'empty' : lit(v.join(','));
  if (typeof v === 'object') return lit(JSON.stringify(v));
  return lit(String(v));
}

function flagRows(flags: readonly FlagSpec[], prefix: string | null): string[][] {
  return flags.map((f) => [
    lit(`--${f.name}`) + (f.alias ? `, ${lit(`-${f.alias}`)}` : '') + (f.required ? ' (required)' : ''),
    prefix ? lit(envVar(prefix, f.name)) : 'none',
    f.defaultText ? text(f.defaultText) : f.default === undefined ? 'none' : lit(String(f.default)),
    text(f.describe) + (f.choices ? ` (${f.choices.map(lit).join(', ')})` : ''),
  ]);
}

function flagsPage(): string {
  const h = ['flag', 'environment variable', 'default', 'meaning'];
  return (
    header('src/cli/flags.ts') +
    title('Flags and environment variables') +
    'Every flag can also be set through its environment variable. A bad value ends the process at once\n' +
    `with one line on stderr and exit code 2 (${ref('Configuration')}).\n\n` +
    title('agent and agent check', '-') +
    table(h, flagRows(AGENT_FLAGS, 'BACKEND'), [20, 25, 20, 35]) +
    '``agent check`` also takes:\n\n' +
    table(h, flagRows(CHECK_FLAGS, 'BACKEND'), [20, 25, 20, 35]) +
    title('agent gpus, methods and keygen', '-') +
    'These commands read no environment variables.\n\n' +
    Object.entries(AGENT_COMMAND_FLAGS)
      .map(([cmd, flags]) => `\`\`agent ${cmd}\`\`:\n\n` + table(h, flagRows(flags, null), [20, 25, 20, 35]))
      .join('') +
    title('agentctl (global flags)', '-') +
    table(h, flagRows(AGENTCTL_FLAGS, 'AGENTCTL'), [20, 25, 20, 35]) +
    title('agentctl commands', '-') +
    'The flags of single commands; like the global ones, each is also an ``AGENTCTL_*`` variable.\n\n' +
    Object.entries(AGENTCTL_COMMAND_FLAGS)
      .map(([cmd, flags]) => `\`\`agentctl ${cmd}\`\`:\n\n` + table(h, flagRows(flags, 'AGENTCTL'), [20, 25, 20, 35]))
      .join('')
  );
}

function settingsPage(): string {
  const rows = SETTINGS.map((s) => [
    lit(s.key),
    text(s.parse.type),
    defaultOf(s.default),
    s.live ? 'yes' : 'no',
    text(s.doc) + (s.see ? ` (see ${ref(s.see)})` : ''),
  ]);
  const poolDefaults = POOL_DEFAULTS as unknown as Record<string, unknown>;
  const poolRows = POOL_SETTINGS.map((s) => [lit(s.key), text(s.parse.type), defaultOf(poolDefaults[s.field]), text(s.doc)]);
  return (
    header('src/config/setting-table.ts (SETTINGS) and src/pool/settings.ts (POOL_SETTINGS)') +
    title('Settings in etcd') +
    'Cluster-wide under ``/sorna/<namespace>/config/agent/<key>``, per node under\n' +
    '``/sorna/<namespace>/nodes/agents/<agent id>/config/<key>``; the node value wins.\n' +
    'A change applies without a restart where *live* says yes, otherwise at the next start.\n\n' +
    table(['key', 'type', 'default', 'live', 'meaning'], rows, [18, 18, 12, 6, 46]) +
    title('Warm pool keys', '-') +
    'JSON-valued keys below ``config/agent/pool/`` (cluster) and ``nodes/agents/<id>/config/pool/``\n' +
    `(node; a node key wins over the same cluster key). All apply live (${ref('Warm pool')}).\n\n` +
    table(['key (below pool/)', 'type', 'default', 'meaning'], poolRows, [18, 20, 12, 50])
  );
}

function methodRows(list: MethodListing[]): string[][] {
  const params = (ps: MethodListing['params']) =>
    ps.length === 0 ? 'none' : ps.map((x) => `- ${lit(x.name)}${x.optional ? ' (optional)' : ''}: ${text(x.type)}`).join('\n');
  return list.map((m) => [
    lit(m.name),
    params(m.params) + (m.legacy ? `\n\nalso accepted:\n\n${params(m.legacy)}` : ''),
    text(m.returns),
    text(m.summary),
  ]);
}

function methodsPage(): string {
  return (
    header('src/rpc/methods.ts (what agent methods prints)') +
    title('RPC methods (2018 managers, aiozmq)') +
    'The methods served on ``--agent-port`` in the framing of ``aiozmq.rpc``, each declared once with\n' +
    'its parameters and their limits (``agent methods`` prints the same). Arguments may be positional or\n' +
    `keyword; one that does not fit is a \`\`ParametersError\`\` naming it (${ref('The wire contract')}).\n\n` +
    table(['method', 'parameters', 'returns', 'what it does'], methodRows(listMethods(Object.values(methods))), [16, 44, 15, 25])
  );
}

function modernMethodsPage(): string {
  return (
    header('src/rpc/modern-methods.ts (what agent methods --modern prints)') +
    title('RPC methods (modern managers, Callosum)') +
    'The methods served to modern (Backend.AI 20.03+, 24.09) managers over Callosum on the same port\n' +
    `(\`\`agent methods --modern\`\` prints the same; ${ref('Modern managers')}).\n\n` +
    table(['method', 'parameters', 'returns', 'what it does'], methodRows(listMethods(Object.values(modernMethods))), [16, 44, 15, 25]) +
    'Not served yet (each answers a ``NotImplemented`` failure naming the method, whatever its arguments):\n' +
    modernNotServed.map(lit).join(', ') +
    '.\n'
  );
}

function modernConfigPage(): string {
  return (
    header('src/kernels/modern-spec.ts (MODERN_CONFIG_KEYS)') +
    title('The modern kernel creation config') +
    "How each key of 24.09's ``KernelCreationConfig`` (``create_kernels``) is treated. *Ignored* keys are\n" +
    'logged as a warning once per kernel; unknown keys are ignored the same way.\n\n' +
    table(
      ['key', 'treatment', 'note'],
      MODERN_CONFIG_KEYS.map((k) => [lit(k.key), k.treatment, k.note]),
      [20, 15, 65],
    )
  );
}

function eventRows(list: readonly EventSpec[]): string[][] {
  return list.map((e) => [
    lit(e.name) + (e.beyond ? ' (beyond)' : ''),
    e.args.length === 0 ? 'none' : e.args.map((a) => `- ${lit(a.name)}: ${text(a.type)}`).join('\n'),
    text(e.when),
  ]);
}

function eventsPage(): string {
  return (
    header('src/events/catalogue.ts') +
    title('Events') +
    title('To 2018 managers (PUSH)', '-') +
    '``[name, agent id, msgpack(args)]`` on a PUSH socket connected to ``nodes/manager/event_addr``.\n' +
    'Events marked *beyond* are not in the 2018 set; its manager ignores them.\n\n' +
    table(['event', 'arguments', 'when'], eventRows(AGENT_EVENTS), [22, 43, 35]) +
    title('To modern managers (Redis stream)', '-') +
    '``XADD`` to the stream ``events`` in Redis database 4, fields ``name``, ``source`` (the agent id) and\n' +
    `\`\`args\`\` (msgpack of the argument list), when \`\`config/redis/addr\`\` is set (${ref('Modern managers')}).\n\n` +
    table(['event', 'arguments', 'when'], eventRows(MODERN_EVENTS), [22, 43, 35])
  );
}

function metricsPage(): string {
  const m = new AgentMetrics(
    {
      poolSizes: () => [],
      claimTotals: () => new Map(),
      coldTotals: () => new Map(),
      poolPasses: () => 0,
      kernelStates: () => ({}),
      gpus: () => [],
      slots: () => ({ cpu_total: 0, cpu_free: 0, mem_total_mib: 0, mem_free_mib: 0 }),
      imagesCollected: () => 0,
      rpcTallies: () => [],
      eventSinks: () => [],
    },
    { file: null, port: null, host: '*', intervalMs: 1000, log: silentLogger() },
  );
  const rows = m.registry.getMetricsAsArray().map((x) => {
    const labels = (x as unknown as { labelNames?: string[] }).labelNames ?? [];
    return [
      lit(x.name),
      String((x as unknown as { type: string }).type),
      labels.length ? labels.map(lit).join(', ') : 'none',
      text(x.help),
    ];
  });
  return (
    header('src/metrics/metrics.ts (the metrics AgentMetrics registers)') +
    title('Prometheus metrics') +
    'Written to ``--metrics`` every 2 s and served at ``GET /metrics`` with ``--metrics-port``\n' +
    `(${ref('Observability')}). The \`\`image\`\` label is the \`\`lang\`\` (\`\`python:3-debian\`\`). The GPU gauges\n` +
    'exist where the node has usable GPUs.\n\n' +
    table(['metric', 'type', 'labels', 'help'], rows, [30, 10, 20, 40])
  );
}

/** A layer of src/ as layers.cjs declares it. */
interface Layer {
  name: string;
  paths: string[];
  what: string;
}

/** The floor plan: the layers of src/, top down, drawn as a stack with the arrow of imports. */
function layersPage(): string {
  const { LAYERS } = createRequire(import.meta.url)('../../layers.cjs') as { LAYERS: Layer[] };
  const where = (l: Layer) => l.paths.map((p) => `src/${p}`).join(' ');
  const width = Math.max(...LAYERS.map((l) => l.name.length)) + 2;
  const lines: string[] = [];
  LAYERS.forEach((l, i) => {
    lines.push(`   ${l.name.padEnd(width)}${where(l)}`);
    lines.push(`   ${' '.repeat(width)}${l.what}`);
    if (i < LAYERS.length - 1) lines.push('     |', '     v');
  });
  return (
    header('layers.cjs (the layers .dependency-cruiser.cjs checks)') +
    title('Layers of src/') +
    'Top down: each layer may import its own and those below it (the arrows), never one above.\n' +
    '``npm run lint:layers`` fails on an import up, on a circle between files and on a module\n' +
    'of src/ that belongs to no layer.\n\n' +
    '.. code-block:: text\n\n' +
    lines.join('\n') +
    '\n'
  );
}

/** The name on the aiozmq port (and where one method differs, that one too). */
function aiozmqName(cls: WireErrorClass): string {
  const others = Object.entries(cls.aiozmqNameIn).map(([method, name]) => `${lit(name)} in ${lit(method)}`);
  return lit(cls.aiozmqName) + (others.length > 0 ? ` (${others.join(', ')})` : '');
}

/** The wire errors: each class's wire name and retryability, and the names 2018 and modern managers see. */
function errorNamesTable(): string {
  const classes: Array<[string, WireErrorClass]> = [
    ...Object.entries(WIRE_ERROR_CLASSES),
    // the ParametersError subclasses, each with its class (ArgumentsError: its own aiozmq name)
    ['Parameters', ArgumentsError],
    ['Parameters', ImpossibleRequestError],
  ];
  const rows = classes.map(([key, cls]) => {
    const callosum = callosumFailure({ type: cls.wireName, args: [], repr: '' }).name;
    return [lit(cls.wireName), lit(`WireErrors.${key}`), aiozmqName(cls), lit(callosum), cls.retryable ? 'yes' : 'no', lit(cls.name)];
  });
  return table(
    ["agent's name", 'client constant', 'aiozmq port (2018)', 'Callosum name', 'retryable', 'class'],
    rows,
    [22, 20, 22, 14, 8, 14],
  );
}

/** The table alone, which docs/wire-contract.rst includes (an `.inc` file: not a page of its own). */
function errorNamesInclude(): string {
  return header('the error classes of src/errors.ts (WIRE_ERROR_CLASSES) and src/rpc/callosum-failure.ts') + errorNamesTable();
}

/** The wire errors page: what the names mean, and the table. */
function errorsPage(): string {
  return (
    header('the error classes of src/errors.ts (WIRE_ERROR_CLASSES) and src/rpc/callosum-failure.ts') +
    title('Wire errors') +
    "Each error kind of the agent (*agent's name*: what the client library's ``RemoteError.remoteType`` and\n" +
    '``agentctl`` show) and the name it travels under on each port. On the aiozmq port (2018 managers) an\n' +
    'error reply is ``[type, args, repr]`` under a Python builtin name, because the 2018 manager handles no\n' +
    "other on its typed path, with the agent's name as the last arg (``KeyError('no kernel with id ...',\n" +
    "'agent.KernelNotFound')``); aiozmq's own ``NotFoundError`` and ``ParametersError`` (arguments that do not\n" +
    'fit the signature, ``ArgumentsError``) keep their names; a config value refused is an ``AssertionError``. A\n' +
    'Callosum failure (modern managers) names the short form. *Retryable*: the same call may succeed later\n' +
    "as it is; the client library's ``RemoteError.retryable`` and ``isRetryable`` read it\n" +
    `(${ref('The wire contract')}). Anything else that fails is \`\`agent.InternalError\`\`, whose message points\n` +
    'at the agent log.\n\n' +
    errorNamesTable()
  );
}

/** Every generated file, by its path below docs/. */
export function generate(): Map<string, string> {
  return new Map([
    ['reference/flags.rst', flagsPage()],
    ['reference/settings.rst', settingsPage()],
    ['reference/methods.rst', methodsPage()],
    ['reference/modern-methods.rst', modernMethodsPage()],
    ['reference/modern-config.rst', modernConfigPage()],
    ['reference/events.rst', eventsPage()],
    ['reference/metrics.rst', metricsPage()],
    ['reference/layers.rst', layersPage()],
    ['reference/errors.rst', errorsPage()],
    ['reference/error-names.inc', errorNamesInclude()],
  ]);
}

/** The docs/ folder of the checkout (this file runs from dist/docs/). */
export const DOCS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../docs');

/** The generated files whose checked-in copy differs (or is missing). */
export async function stale(dir = DOCS_DIR): Promise<string[]> {
  const out: string[] = [];
  for (const [file, content] of generate()) {
    const now = await fs.readFile(path.join(dir, file), 'utf8').catch(() => null);
    if (now !== content) out.push(file);
  }
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--check')) {
    const files = await stale();
    for (const f of files) console.error(`docs: ${f} differs from the code; run npm run docs:gen`);
    process.exit(files.length ? 1 : 0);
  }
  for (const [file, content] of generate()) await fs.writeFile(path.join(DOCS_DIR, file), content);
  console.error(`docs: wrote ${[...generate().keys()].join(', ')}`);
}
