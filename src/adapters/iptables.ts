/**
 * The iptables(8) adapter: chains of the agent's own in the host's firewall,
 * made, filled, hooked into a built-in chain and removed again, through the
 * iptables command (no shell, `-w` so that concurrent callers such as dockerd
 * wait for the lock instead of failing). It knows nothing of kernels: the
 * rules are src/containers/firewall.ts's.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** How long one iptables call may take (it waits up to this for the xtables lock). */
const CALL_TIMEOUT_MS = 15_000;

/** A table of the firewall. */
export type FirewallTable = 'filter' | 'mangle';

/** A failure of one iptables call, with what it printed. */
export class IptablesError extends Error {
  constructor(
    readonly args: readonly string[],
    readonly stderr: string,
  ) {
    super(`iptables ${args.join(' ')}: ${stderr.trim().split('\n')[0] || 'failed'}`);
  }
}

/** Runs one iptables command; resolves with what it printed, rejects with an {@link IptablesError}. */
async function iptables(args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await exec('iptables', ['-w', '5', ...args], { timeout: CALL_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; code?: string | number; message: string };
    throw new IptablesError(args, e.code === 'ENOENT' ? 'the iptables command is not installed' : (e.stderr ?? e.message));
  }
}

/** Whether the rule is in the chain (`iptables -C`). */
async function hasRule(table: FirewallTable, chain: string, rule: readonly string[]): Promise<boolean> {
  try {
    await iptables(['-t', table, '-C', chain, ...rule]);
    return true;
  } catch (err) {
    // Exit status 1 (printed as "Bad rule" or "does a matching rule exist"): absent. A missing chain is absent too.
    if (err instanceof IptablesError && /does a matching rule exist|Bad rule|No chain|does not exist/i.test(err.stderr)) return false;
    throw err;
  }
}

/** The iptables version line (`iptables v1.8.9 (nf_tables)`): proves the command runs. */
export async function iptablesVersion(): Promise<string> {
  return (await iptables(['--version'])).trim();
}

/** The names of the chains of a table. */
export async function listChains(table: FirewallTable): Promise<string[]> {
  const out = await iptables(['-t', table, '-S']);
  return out
    .split('\n')
    .filter((l) => l.startsWith('-N '))
    .map((l) => l.slice(3).trim());
}

/** The rules of one chain, as `-S` prints them (`-A CHAIN ...`). */
export async function listRules(table: FirewallTable, chain: string): Promise<string[]> {
  const out = await iptables(['-t', table, '-S', chain]);
  return out.split('\n').filter((l) => l.startsWith('-A '));
}

/**
 * Makes the chain hold exactly `rules`, in order: created when absent,
 * flushed and refilled when present. Between the flush and the last rule the
 * chain is shorter than wanted, so a caller fills a chain before it hooks it.
 */
export async function fillChain(table: FirewallTable, chain: string, rules: readonly (readonly string[])[]): Promise<void> {
  const chains = await listChains(table);
  if (chains.includes(chain)) await iptables(['-t', table, '-F', chain]);
  else await iptables(['-t', table, '-N', chain]);
  for (const rule of rules) await iptables(['-t', table, '-A', chain, ...rule]);
}

/** Puts `rule` first in the built-in chain unless it is already there; a copy further down is removed. */
export async function hookFirst(table: FirewallTable, builtin: string, rule: readonly string[]): Promise<void> {
  const spec = ['-A', builtin, ...rule].join(' ');
  const rules = await listRules(table, builtin);
  if (rules[0] === spec) return;
  while (await hasRule(table, builtin, rule)) await iptables(['-t', table, '-D', builtin, ...rule]);
  await iptables(['-t', table, '-I', builtin, '1', ...rule]);
}

/** Removes every copy of `rule` from the built-in chain (none: nothing happens). */
export async function unhook(table: FirewallTable, builtin: string, rule: readonly string[]): Promise<void> {
  while (await hasRule(table, builtin, rule)) await iptables(['-t', table, '-D', builtin, ...rule]);
}

/** Flushes and deletes the chain, if it exists (it must no longer be hooked anywhere). */
export async function dropChain(table: FirewallTable, chain: string): Promise<void> {
  if (!(await listChains(table)).includes(chain)) return;
  await iptables(['-t', table, '-F', chain]);
  await iptables(['-t', table, '-X', chain]);
}
