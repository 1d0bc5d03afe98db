/**
 * The agent's command-line and environment options, validated into one
 * typed object before anything starts. Every check names the flag (and its
 * environment variable) and says what to do, so a bad value ends the process
 * with one clear line.
 */
import { randomUUID } from 'node:crypto';
import { constants as fsc, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../errors.js';
import type { LogFormat, LogLevel } from '../log.js';

/** AgentOptions are the validated values of the agent's flags. */
export interface AgentOptions {
  /** The etcd cluster's client endpoints, in the order given (the client fails over between them). */
  etcdAddr: Array<{ host: string; port: number }>;
  namespace: string;
  scratchRoot: string;
  agentPort: number;
  /** Address the RPC socket binds (`*` for all interfaces). */
  bindHost: string;
  agentId: string;
  region: string;
  agentHostOverride: string | null;
  kernelHostOverride: string | null;
  idleTimeoutSec: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
  /** The Prometheus text file written for node_exporter; null: none. */
  metricsPath: string | null;
  /** The port of the HTTP `/metrics` endpoint; null: none. */
  metricsPort: number | null;
}

/** The default of `--metrics`: node_exporter's textfile collector directory. */
export const DEFAULT_METRICS_PATH = '/var/lib/node_exporter/textfile_collector/compute_agent.prom';

/** The raw values as yargs hands them over (flags, env vars and defaults merged). */
export interface RawOptions {
  etcdAddr: string;
  namespace: string;
  scratchRoot: string;
  agentPort: number;
  bindHost: string;
  agentId?: string | undefined;
  region: string;
  agentHostOverride?: string | undefined;
  kernelHostOverride?: string | undefined;
  idleTimeout: number;
  logLevel: string;
  logFormat: string;
  /** `--metrics`: absent or empty turns the file off (the CLI passes its default). */
  metrics?: string | undefined;
  /** `--metrics-port`: absent or 0 turns the endpoint off. */
  metricsPort?: number | undefined;
}

const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Parses `host:port` (IPv6 in brackets), e.g. the etcd address. */
export function parseHostPort(value: string, flag: string): { host: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(value.trim());
  if (!m || !HOST.test(m[1]!)) {
    throw new ConfigError(`${flag} ${JSON.stringify(value)} is not HOST:PORT (e.g. 127.0.0.1:2379)`);
  }
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1'), port: checkPort(Number(m[2]), flag) };
}

/**
 * Parses a comma-separated list of `host:port` endpoints (an etcd cluster's
 * members), e.g. `10.0.0.1:2379,10.0.0.2:2379`; a repeated or empty entry is an error.
 */
export function parseEndpoints(value: string, flag: string): Array<{ host: string; port: number }> {
  const parts = value.split(',').map((p) => p.trim());
  if (parts.some((p) => p === '')) {
    throw new ConfigError(
      `${flag} ${JSON.stringify(value)} has an empty entry: give HOST:PORT[,HOST:PORT...] (e.g. 10.0.0.1:2379,10.0.0.2:2379)`,
    );
  }
  const out = parts.map((p) => parseHostPort(p, flag));
  const seen = new Set<string>();
  for (const e of out) {
    const k = `${e.host}:${e.port}`;
    if (seen.has(k)) throw new ConfigError(`${flag} lists ${k} twice: give each etcd member once`);
    seen.add(k);
  }
  return out;
}

function checkPort(port: number, flag: string): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`${flag} ${port} is out of range: use a TCP port from 1 to 65535`);
  }
  return port;
}

function checkHost(value: string | undefined, flag: string): string | null {
  if (value === undefined || value === '') return null;
  if (!HOST.test(value)) throw new ConfigError(`${flag} ${JSON.stringify(value)} is not a host name or IP address`);
  return value.replace(/^\[(.*)\]$/, '$1');
}

/** Checks that the scratch root is a directory the agent can really create files in. */
export async function checkScratchRoot(dir: string, flag = '--scratch-root'): Promise<string> {
  const abs = path.resolve(dir);
  let st;
  try {
    st = await fs.stat(abs);
  } catch {
    throw new ConfigError(`${flag} ${abs} does not exist: create it (mkdir -p ${abs}) or point ${flag} elsewhere`);
  }
  if (!st.isDirectory()) throw new ConfigError(`${flag} ${abs} is not a directory`);
  // access(W_OK) says yes to root even on a read-only mount, so try for real.
  const probe = path.join(abs, `.agent-write-probe-${randomUUID()}`);
  try {
    await fs.access(abs, fsc.W_OK | fsc.X_OK);
    await fs.writeFile(probe, '');
    await fs.unlink(probe);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(`${flag} ${abs} is not writable (${code}): fix its permissions or mount, or point ${flag} elsewhere`);
  }
  return abs;
}

/**
 * Validates raw options into {@link AgentOptions}; throws ConfigError naming
 * the first bad flag. `agent check` passes `checkScratch: false` so that a
 * scratch root it cannot use becomes one failed line of its checklist.
 */
export async function validateOptions(raw: RawOptions, { checkScratch = true } = {}): Promise<AgentOptions> {
  if (!NAME.test(raw.namespace)) {
    throw new ConfigError(`--namespace ${JSON.stringify(raw.namespace)} must be letters, digits, "_", "." or "-"`);
  }
  const agentId = raw.agentId ?? `i-${os.hostname()}`;
  if (!NAME.test(agentId)) throw new ConfigError(`--agent-id ${JSON.stringify(agentId)} must be letters, digits, "_", "." or "-"`);
  if (!Number.isFinite(raw.idleTimeout) || raw.idleTimeout < 0) {
    throw new ConfigError(`--idle-timeout ${raw.idleTimeout} must be a number of seconds >= 0 (0 turns idle reaping off)`);
  }
  const levels = ['error', 'warn', 'info', 'debug'];
  if (!levels.includes(raw.logLevel)) throw new ConfigError(`--log-level must be one of ${levels.join(', ')}`);
  if (raw.logFormat !== 'text' && raw.logFormat !== 'json') throw new ConfigError('--log-format must be text or json');
  const bindHost = raw.bindHost === '*' ? '*' : checkHost(raw.bindHost, '--bind-host');
  return {
    etcdAddr: parseEndpoints(raw.etcdAddr, '--etcd-addr'),
    namespace: raw.namespace,
    agentPort: checkPort(Number(raw.agentPort), '--agent-port'),
    bindHost: bindHost ?? '*',
    agentId,
    region: raw.region,
    agentHostOverride: checkHost(raw.agentHostOverride, '--agent-host-override'),
    kernelHostOverride: checkHost(raw.kernelHostOverride, '--kernel-host-override'),
    idleTimeoutSec: raw.idleTimeout,
    logLevel: raw.logLevel as LogLevel,
    logFormat: raw.logFormat,
    scratchRoot: checkScratch ? await checkScratchRoot(raw.scratchRoot) : path.resolve(raw.scratchRoot),
    metricsPath: raw.metrics ? path.resolve(raw.metrics) : null,
    metricsPort: raw.metricsPort ? checkPort(Number(raw.metricsPort), '--metrics-port') : null,
  };
}
