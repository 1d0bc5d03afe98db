/**
 * What every agentctl subcommand shares: the global flags, finding the agent
 * (`--agent`, or the agents registered in etcd), turning any failure into one
 * line on stderr, and small formatting helpers for tables.
 */
import { parseEndpoints } from '../../config/options.js';
import { EtcdStore } from '../../adapters/etcd.js';
import { AGENTS_PREFIX } from '../../config/etcd-keys.js';
import { AgentError, errorMessage, RemoteError, RpcTimeoutError } from '../../errors.js';
import { silentLogger } from '../../log.js';
import { AgentApi } from '../../rpc/api.js';

export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** The global flags of agentctl. */
export interface GlobalArgs {
  agent?: string;
  etcdAddr: string;
  namespace: string;
  agentId?: string;
  timeout: number;
  json: boolean;
  /** Speak Callosum 1.x, as a modern (24.09) manager does (ping and call). */
  callosum?: boolean;
}

/** CtlError is a failure of agentctl itself (not of the agent), said in one line; `code` is the exit code. */
export class CtlError extends Error {
  constructor(
    message: string,
    readonly code = EXIT_FAILED,
  ) {
    super(message);
  }
}

/** One line for any failure: `agentctl: <what happened> (<wire error type>)`. */
export function describeFailure(err: unknown): string {
  if (err instanceof RemoteError) return `${err.remoteMessage} (${err.remoteType})`;
  if (err instanceof RpcTimeoutError) return `${err.message} (${err.wireName})`;
  if (err instanceof AgentError || err instanceof CtlError) return err.message;
  return errorMessage(err);
}

/** Prints the failure as one line and exits with its code. */
export function fail(err: unknown): never {
  process.stderr.write(`agentctl: ${describeFailure(err).replace(/\s*\n\s*/g, ' ')}\n`);
  process.exit(err instanceof CtlError ? err.code : EXIT_FAILED);
}

/**
 * Wraps a subcommand's handler: any failure becomes one line and exit 1,
 * success exits with the code it returns. `A` is the parsed flags as the
 * subcommand declares them (yargs' inferred types are not carried across files).
 */
export function action<A>(fn: (argv: A) => Promise<number | void>): (argv: unknown) => Promise<void> {
  return async (argv) => {
    let code: number | void;
    try {
      code = await fn(argv as A);
    } catch (err) {
      fail(err);
    }
    process.exit(code ?? 0);
  };
}

/** An etcd store on the namespace of the flags; close it when done. */
export function openEtcd(argv: GlobalArgs): EtcdStore {
  let addr;
  try {
    addr = parseEndpoints(argv.etcdAddr, '--etcd-addr');
  } catch (err) {
    throw new CtlError(errorMessage(err), EXIT_USAGE);
  }
  return new EtcdStore(addr, argv.namespace, silentLogger());
}

/** An agent as registered in etcd under `nodes/agents/<id>`. */
export interface RegisteredAgent {
  id: string;
  status: string;
  ip: string | null;
  addr: string | null;
  /** The last heartbeat record, when the agent writes one. */
  heartbeat: { time?: number; addr?: string; cpu_slots?: number; mem_slots?: number; node?: Record<string, unknown> } | null;
  /** The drain in force (`nodes/agents/<id>/draining`: unix seconds), or null. */
  draining: { since?: number; deadline?: number | null } | null;
}

/** Reads the agents registered in the namespace. */
export async function registeredAgents(etcd: EtcdStore): Promise<RegisteredAgent[]> {
  let all: Record<string, string>;
  try {
    all = await etcd.getPrefix(AGENTS_PREFIX);
  } catch (err) {
    throw new CtlError(
      `cannot read the agents from etcd at ${etcd.where} (${errorMessage(err)}); fix --etcd-addr or give --agent tcp://host:port`,
    );
  }
  const agents = new Map<string, RegisteredAgent>();
  const get = (id: string) => {
    let a = agents.get(id);
    if (!a) agents.set(id, (a = { id, status: '-', ip: null, addr: null, heartbeat: null, draining: null }));
    return a;
  };
  for (const [key, value] of Object.entries(all)) {
    const [id, field, ...rest] = key.split('/');
    if (!id || rest.length) continue;
    if (field === undefined) get(id).status = value;
    else if (field === 'ip') get(id).ip = value;
    else if (field === 'addr') get(id).addr = value;
    else if (field === 'heartbeat' || field === 'draining') {
      try {
        const v = JSON.parse(value) as unknown;
        if (field === 'heartbeat') get(id).heartbeat = v as RegisteredAgent['heartbeat'];
        else get(id).draining = (v && typeof v === 'object' ? v : {}) as RegisteredAgent['draining'];
      } catch {
        // a half-written or foreign value: shown as absent (a foreign draining value still says draining)
        if (field === 'draining') get(id).draining = {};
      }
    }
  }
  return [...agents.values()].filter((a) => a.status !== '-').sort((x, y) => x.id.localeCompare(y.id));
}

/** The RPC endpoint to talk to: `--agent`, or the one agent registered in etcd (or the one `--agent-id` names). */
export async function resolveEndpoint(argv: GlobalArgs): Promise<string> {
  if (argv.agent) return argv.agent.includes('://') ? argv.agent : `tcp://${argv.agent}`;
  const etcd = openEtcd(argv);
  try {
    const agents = (await registeredAgents(etcd)).filter((a) => a.addr || a.heartbeat?.addr);
    const where = `etcd ${etcd.where} namespace ${argv.namespace}`;
    let pick: RegisteredAgent | undefined;
    if (argv.agentId) {
      pick = agents.find((a) => a.id === argv.agentId);
      if (!pick) throw new CtlError(`no agent ${argv.agentId} with an address in ${where}; agentctl agents lists them`);
    } else if (agents.length === 1) {
      pick = agents[0];
    } else if (agents.length === 0) {
      throw new CtlError(`no agent registered in ${where}; start one, or give --agent tcp://host:port`);
    } else {
      throw new CtlError(
        `${agents.length} agents are registered in ${where} (${agents.map((a) => a.id).join(', ')}); pick one with --agent-id`,
      );
    }
    return (pick!.addr ?? pick!.heartbeat!.addr)!;
  } finally {
    etcd.close();
  }
}

/**
 * Connects to the agent the flags name, and pings it with the quick timeout,
 * so that an agent that is not there fails fast instead of after the long
 * timeout of a slow call such as create_kernel.
 */
export async function connect(argv: GlobalArgs): Promise<AgentApi> {
  const api = new AgentApi(await resolveEndpoint(argv), { timeoutMs: argv.timeout * 1000 });
  try {
    await api.ping('agentctl');
  } catch (err) {
    api.close();
    throw err;
  }
  return api;
}

/** Runs `fn` with a connected client and closes it afterwards. */
export async function withAgent<T>(argv: GlobalArgs, fn: (api: AgentApi) => Promise<T>): Promise<T> {
  const api = await connect(argv);
  try {
    return await fn(api);
  } finally {
    api.close();
  }
}

/** Prints a value as JSON (buffers as base64). */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, (_k, v: unknown) => (isBufferJson(v) ? Buffer.from(v.data).toString('base64') : v), 2) + '\n');
}

function isBufferJson(v: unknown): v is { type: 'Buffer'; data: number[] } {
  return (
    typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)
  );
}

/** Prints rows as an aligned plain-text table with a header. */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  process.stdout.write([line(header), ...rows.map(line)].join('\n') + '\n');
}

/** A duration in seconds as `42s`, `3m`, `2h`, `5d`. */
export function formatAge(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-';
  if (seconds < 90) return `${Math.round(seconds)}s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)}m`;
  if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

/** A byte count as `512B`, `12.5MiB`, ... */
export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n}B` : `${n.toFixed(1)}${units[i]}`;
}
