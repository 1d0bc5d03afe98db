/**
 * `agentctl --callosum ...`: talks to the agent the way a modern (24.09)
 * manager does, with the same Callosum 1.x client (src/rpc/callosum-client.ts):
 * `ping` does the handshake, a ping and `health`; `call <method> [json
 * args...]` calls any method of either table by name (the 2018 one without
 * --callosum), printing the result as JSON.
 */
import type { Argv } from 'yargs';
import { CallosumClient } from '../../rpc/callosum-client.js';
import { modernMethods } from '../../rpc/modern-methods.js';
import { action, CtlError, EXIT_USAGE, printJson, resolveEndpoint, withAgent, type GlobalArgs } from './common.js';

/** Runs `fn` with a Callosum client on the agent (handshake done by the first call) and closes it. */
export async function withCallosum<T>(argv: GlobalArgs, fn: (c: CallosumClient, endpoint: string) => Promise<T>): Promise<T> {
  const endpoint = await resolveEndpoint(argv);
  const c = new CallosumClient(endpoint, { timeoutMs: argv.timeout * 1000, handshakeMs: Math.min(5000, argv.timeout * 1000) });
  try {
    return await fn(c, endpoint);
  } finally {
    c.close();
  }
}

/** `ping` over Callosum: what a 24.09 manager sees first. */
export async function callosumPing(argv: GlobalArgs): Promise<void> {
  await withCallosum(argv, async (c, endpoint) => {
    const started = process.hrtime.bigint();
    const msg = `agentctl-${process.pid}`;
    const echo = await c.call(modernMethods.ping, msg);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    if (echo !== msg) throw new Error(`the agent answered ${JSON.stringify(echo)} instead of echoing ${JSON.stringify(msg)}`);
    const health = await c.call(modernMethods.health);
    if (argv.json) printJson({ ok: true, ms, health });
    else
      process.stdout.write(
        `pong over Callosum 1.x from ${endpoint} in ${ms.toFixed(1)} ms (handshake included); agent ${health.version}, ${health.kernels} kernel(s)\n`,
      );
  });
}

function parseArgs(raw: string[]): unknown[] {
  return raw.map((a, i) => {
    try {
      return JSON.parse(a) as unknown;
    } catch {
      throw new CtlError(`argument ${i + 1} is not JSON: ${a} (strings need quotes: '"text"')`, EXIT_USAGE);
    }
  });
}

/** Adds `call` to agentctl. */
export function callCommand<T extends GlobalArgs>(y: Argv<T>): Argv<T> {
  return y.command(
    'call <method> [args..]',
    'call any RPC method by name with JSON arguments and print the result (with --callosum: the modern table, as a 24.09 manager)',
    (c) => c.positional('method', { type: 'string', demandOption: true }).positional('args', { type: 'string', array: true, default: [] }),
    action<GlobalArgs & { method: string; args: string[] }>(async (argv) => {
      const args = parseArgs(argv.args);
      const value = argv.callosum
        ? await withCallosum(argv, (c) => c.callRaw(argv.method, args))
        : await withAgent(argv, (api) => api.client.callRaw(argv.method, args));
      printJson(value ?? null);
    }),
  ) as unknown as Argv<T>;
}
