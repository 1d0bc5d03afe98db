/**
 * `agentctl drain` and `agentctl undrain` (docs/agentctl.rst, "Draining a
 * node"): through the agent's `drain` and `undrain` methods, or with `--etcd`
 * by writing or deleting the node's drain key directly, for a node that
 * cannot be reached (the agent follows the key, and reads it at its next start).
 */
import type { Argv } from 'yargs';
import { drainKey } from '../../config/etcd-keys.js';
import { errorMessage } from '../../errors.js';
import type { DrainStatus } from '../../rpc/results.js';
import { addFlags, AGENTCTL_COMMAND_FLAGS } from '../flags.js';
import { action, CtlError, EXIT_USAGE, openEtcd, printJson, registeredAgents, withAgent, type GlobalArgs } from './common.js';

type DrainArgs = GlobalArgs & { deadline?: number; etcd: boolean };

/** Registers drain and undrain on the agentctl parser. */
export function drainCommands(y: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return y
    .command(
      'drain',
      'drain the node: refuse new kernels, empty the warm pool, keep running kernels (destroyed at --deadline); kept across restarts',
      (c) => addFlags(c, AGENTCTL_COMMAND_FLAGS.drain),
      action<DrainArgs>(async (argv) => {
        const deadline = argv.deadline ?? null;
        if (deadline !== null && !(Number.isFinite(deadline) && deadline >= 0))
          throw new CtlError('--deadline is a number of seconds, 0 or more', EXIT_USAGE);
        if (argv.etcd) {
          const now = Date.now() / 1000;
          const id = await writeKey(argv, JSON.stringify({ since: now, deadline: deadline === null ? null : now + deadline }));
          return say(argv, `drain asked of ${id} in etcd; it drains as soon as it reads the key`, { agent_id: id, asked: true });
        }
        await withAgent(argv, async (api) => report(argv, await api.drain(deadline)));
      }),
    )
    .command(
      'undrain',
      'end a drain: the node takes new kernels again and refills its warm pool',
      (c) => addFlags(c, AGENTCTL_COMMAND_FLAGS.undrain),
      action<DrainArgs>(async (argv) => {
        if (argv.etcd) {
          const id = await writeKey(argv, null);
          return say(argv, `drain of ${id} deleted in etcd`, { agent_id: id, asked: false });
        }
        await withAgent(argv, async (api) => report(argv, await api.undrain()));
      }),
    );
}

function report(argv: GlobalArgs, s: DrainStatus): void {
  if (argv.json) return printJson(s);
  const at = (sec: number) => new Date(sec * 1000).toISOString();
  if (!s.draining) process.stdout.write(`not draining: new kernels are taken (${s.kernels} running)\n`);
  else
    process.stdout.write(
      `draining since ${at(s.since!)}: ${s.kernels} kernel(s) left` +
        (s.deadline === null ? ', no deadline\n' : `, destroyed at ${at(s.deadline)} (reason node-drain)\n`),
    );
}

function say(argv: GlobalArgs, line: string, json: Record<string, unknown>): void {
  if (argv.json) printJson(json);
  else process.stdout.write(`${line}\n`);
}

/** Puts (or deletes, for null) the drain key of the agent `--agent-id` names, or of the one agent registered. */
async function writeKey(argv: GlobalArgs, value: string | null): Promise<string> {
  const etcd = openEtcd(argv);
  try {
    let id = argv.agentId;
    if (!id) {
      const agents = await registeredAgents(etcd);
      if (agents.length !== 1)
        throw new CtlError(`--etcd needs --agent-id: ${agents.length} agents are registered (agentctl agents lists them)`, EXIT_USAGE);
      id = agents[0]!.id;
    }
    const key = drainKey(id);
    try {
      if (value === null) await etcd.delete(key);
      else await etcd.put(key, value);
    } catch (err) {
      throw new CtlError(`cannot write ${key} in etcd at ${etcd.where} (${errorMessage(err)}); fix --etcd-addr`);
    }
    return id;
  } finally {
    etcd.close();
  }
}
