/**
 * The firewall rules that keep kernels apart (docs/security.rst, "Kernel
 * networks"): what they are, derived from the agent id, the kernel network's
 * bridge and `kernel_egress`, and how they are put in place and taken out.
 * They live in three chains of the agent's own, named with its id, and each
 * is reached by one jump from a built-in chain (or Docker's DOCKER-USER):
 *
 * - `CA-<id>-PRE` (mangle PREROUTING, before Docker's port forwarding
 *   rewrites the address): a new connection from a kernel to any address of
 *   the host is dropped, so no port of the host is reachable, the agent's
 *   and the ports other containers publish included, whatever address they
 *   listen on;
 * - `CA-<id>-IN` (filter INPUT): the same for what reaches the host's own
 *   sockets, the gateway address included;
 * - `CA-<id>-FWD` (filter DOCKER-USER, which Docker runs first in FORWARD):
 *   kernels never reach each other through the bridge (br_netfilter) nor
 *   any other container network of the node, in either direction, and with
 *   `kernel_egress deny` nothing beyond the node either.
 *
 * Replies to connections made from outside (the manager reaching a published
 * port, the agent's own relay) are let through by conntrack state.
 */
import { createHash } from 'node:crypto';
import { dropChain, fillChain, hookFirst, listChains, unhook, type FirewallTable } from '../adapters/iptables.js';

/** What kernels may reach beyond the node (`kernel_egress`). */
export type KernelEgress = 'allow' | 'deny';

/** The interfaces of other container networks on the node: Docker's default bridge, its user networks and other agents'. */
export const OTHER_BRIDGES = ['docker0', 'br-+'] as const;

/** The prefix of every kernel network's bridge interface, this agent's and any other's on the node. */
export const KERNEL_BRIDGE_PREFIX = 'cak-';

/** The prefix of every chain of every agent, for `agent check` and for the tests' sweeps. */
export const CHAIN_PREFIX = 'CA-';

/** One of the agent's chains: its table, name, the built-in chain it is hooked from and its rules. */
export interface ChainPlan {
  table: FirewallTable;
  chain: string;
  /** The built-in chain (or DOCKER-USER) that jumps to it. */
  from: string;
  /** The jump, as a rule of `from`. */
  hook: string[];
  rules: string[][];
}

/** iptables allows 28 characters in a chain name; `CA-` + id + `-FWD` must fit. */
const MAX_ID_PART = 20;

/** The part of the chain names that names the agent: its id, or a prefix and a hash when the id is long. */
export function chainId(agentId: string): string {
  if (agentId.length <= MAX_ID_PART) return agentId;
  const hash = createHash('sha256').update(agentId).digest('hex').slice(0, 7);
  return `${agentId.slice(0, MAX_ID_PART - 8)}~${hash}`;
}

const ESTABLISHED = ['-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'RETURN'];

/** The three chains of an agent whose kernels sit on `bridge`. */
export function firewallPlan(agentId: string, bridge: string, egress: KernelEgress): ChainPlan[] {
  const base = `${CHAIN_PREFIX}${chainId(agentId)}`;
  const pre = `${base}-PRE`;
  const input = `${base}-IN`;
  const fwd = `${base}-FWD`;
  const others = [...OTHER_BRIDGES, `${KERNEL_BRIDGE_PREFIX}+`];
  const forward: string[][] = [
    ['-i', bridge, ...ESTABLISHED],
    ['-o', bridge, ...ESTABLISHED],
    ['-i', bridge, '-o', bridge, '-j', 'DROP'],
    // Other container networks, both ways (a kernel bridge of another agent matches `cak-+`, and so does this one: dropped above).
    ...others.flatMap((o) => [
      ['-i', bridge, '-o', o, '-j', 'DROP'],
      ['-i', o, '-o', bridge, '-j', 'DROP'],
    ]),
    ...(egress === 'deny' ? [['-i', bridge, '-j', 'DROP']] : []),
  ];
  return [
    {
      table: 'mangle',
      chain: pre,
      from: 'PREROUTING',
      hook: ['-i', bridge, '-j', pre],
      rules: [ESTABLISHED, ['-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'DROP']],
    },
    { table: 'filter', chain: input, from: 'INPUT', hook: ['-i', bridge, '-j', input], rules: [ESTABLISHED, ['-j', 'DROP']] },
    { table: 'filter', chain: fwd, from: 'DOCKER-USER', hook: ['-j', fwd], rules: forward },
  ];
}

/** Fills each chain, then hooks it first in its built-in chain: rebuilt from nothing at every start. */
export async function installFirewall(plan: readonly ChainPlan[]): Promise<void> {
  for (const c of plan) {
    await fillChain(c.table, c.chain, c.rules);
    await hookFirst(c.table, c.from, c.hook);
  }
}

/** Unhooks and deletes each chain; what is already gone is fine. */
export async function removeFirewall(plan: readonly ChainPlan[]): Promise<void> {
  for (const c of plan) {
    await unhook(c.table, c.from, c.hook);
    await dropChain(c.table, c.chain);
  }
}

/** The chains of the plan that are missing from the firewall now (empty: all are there). */
export async function missingChains(plan: readonly ChainPlan[]): Promise<string[]> {
  const missing: string[] = [];
  for (const table of new Set(plan.map((c) => c.table))) {
    const present = new Set(await listChains(table));
    for (const c of plan) if (c.table === table && !present.has(c.chain)) missing.push(`${table}/${c.chain}`);
  }
  return missing;
}
