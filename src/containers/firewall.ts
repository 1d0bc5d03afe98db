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
 * The kernels of a session (docs/sessions.rst) sit on a bridge of their
 * session, named `cas-...` ({@link SESSION_BRIDGE_PREFIX}); the same three
 * chains cover every such bridge by its prefix, so they need no change when
 * a session comes or goes: the one thing they let through is traffic bridged
 * within one session bridge (`physdev --physdev-is-bridged`: it never left
 * that bridge, so it goes from a kernel of the session to another of the
 * same session); routed traffic between session bridges, to the kernel
 * network or other container networks, and to the host is dropped. This is
 * why the PRE and IN chains are hooked for every packet and match the
 * interfaces in their rules.
 *
 * Replies to connections made from outside (the manager reaching a published
 * port, the agent's own relay) are let through by conntrack state.
 */
import { createHash } from 'node:crypto';
import { dropChain, fillChain, hookFirst, listChains, listRules, unhook, type FirewallTable } from '../adapters/iptables.js';

/** What kernels may reach beyond the node (`kernel_egress`). */
export type KernelEgress = 'allow' | 'deny';

/** The interfaces of other container networks on the node: Docker's default bridge, its user networks and other agents'. */
export const OTHER_BRIDGES = ['docker0', 'br-+'] as const;

/** The prefix of every kernel network's bridge interface, this agent's and any other's on the node. */
export const KERNEL_BRIDGE_PREFIX = 'cak-';

/** The prefix of every session network's bridge interface (src/containers/session-network.ts), any agent's. */
export const SESSION_BRIDGE_PREFIX = 'cas-';

/**
 * The ports of Docker Swarm between nodes, which no kernel may reach on any
 * host (with `kernel_egress allow` too): a kernel's packets leave the node
 * masqueraded as the node, a member of the swarm, so a forged VXLAN packet
 * to another node would land in the overlay networks of other sessions, and
 * the control and gossip ports are the swarm's own (docs/security.rst).
 */
export const SWARM_PORTS = [
  { proto: 'udp', port: 4789, what: 'VXLAN data of overlay networks' },
  { proto: 'tcp', port: 2377, what: 'swarm control (managers)' },
  { proto: 'tcp', port: 7946, what: 'gossip among nodes' },
  { proto: 'udp', port: 7946, what: 'gossip among nodes' },
] as const;

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

/** Drops what kernels behind `from` send to the swarm's ports anywhere (with `kernel_egress deny`, everything is dropped already). */
const swarmDrops = (from: string): string[][] =>
  SWARM_PORTS.map((p) => ['-i', from, '-p', p.proto, '-m', p.proto, '--dport', String(p.port), '-j', 'DROP']);

/** The three chains of an agent whose kernels sit on `bridge` (and on session bridges, `cas-+`). */
export function firewallPlan(agentId: string, bridge: string, egress: KernelEgress): ChainPlan[] {
  const base = `${CHAIN_PREFIX}${chainId(agentId)}`;
  const pre = `${base}-PRE`;
  const input = `${base}-IN`;
  const fwd = `${base}-FWD`;
  const sessions = `${SESSION_BRIDGE_PREFIX}+`;
  const others = [...OTHER_BRIDGES, `${KERNEL_BRIDGE_PREFIX}+`, sessions];
  const forward: string[][] = [
    ['-i', bridge, ...ESTABLISHED],
    ['-o', bridge, ...ESTABLISHED],
    ['-i', bridge, '-o', bridge, '-j', 'DROP'],
    // Other container networks, both ways (a kernel bridge of another agent matches `cak-+`, and so does this one: dropped above).
    ...others.flatMap((o) => [
      ['-i', bridge, '-o', o, '-j', 'DROP'],
      ['-i', o, '-o', bridge, '-j', 'DROP'],
    ]),
    ...(egress === 'deny' ? [['-i', bridge, '-j', 'DROP']] : swarmDrops(bridge)),
    // Session bridges: within one bridge, every port; routed to any other container network (another session's included), never.
    ['-i', sessions, ...ESTABLISHED],
    ['-o', sessions, ...ESTABLISHED],
    ['-i', sessions, '-m', 'physdev', '--physdev-is-bridged', '-j', 'RETURN'],
    ...others.flatMap((o) => [
      ['-i', sessions, '-o', o, '-j', 'DROP'],
      ['-i', o, '-o', sessions, '-j', 'DROP'],
    ]),
    ...(egress === 'deny' ? [['-i', sessions, '-j', 'DROP']] : swarmDrops(sessions)),
  ];
  const toHost = (rest: string[]) => [bridge, sessions].map((i) => ['-i', i, ...rest]);
  return [
    {
      table: 'mangle',
      chain: pre,
      from: 'PREROUTING',
      hook: ['-j', pre],
      rules: [ESTABLISHED, ...toHost(['-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'DROP'])],
    },
    { table: 'filter', chain: input, from: 'INPUT', hook: ['-j', input], rules: [ESTABLISHED, ...toHost(['-j', 'DROP'])] },
    { table: 'filter', chain: fwd, from: 'DOCKER-USER', hook: ['-j', fwd], rules: forward },
  ];
}

/** Fills each chain, then hooks it first in its built-in chain: rebuilt from nothing at every start. */
export async function installFirewall(plan: readonly ChainPlan[]): Promise<void> {
  for (const c of plan) {
    await fillChain(c.table, c.chain, c.rules);
    await unhookFormer(c);
    await hookFirst(c.table, c.from, c.hook);
  }
}

/**
 * Removes the jumps to the chain other than its hook: releases before
 * session networks hooked PRE and IN by the kernel bridge only, and a
 * chain still jumped to cannot be deleted at the stop.
 */
async function unhookFormer(c: ChainPlan): Promise<void> {
  const spec = ['-A', c.from, ...c.hook].join(' ');
  for (const rule of await listRules(c.table, c.from))
    if (rule !== spec && rule.endsWith(` -j ${c.chain}`)) await unhook(c.table, c.from, rule.split(' ').slice(2));
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
