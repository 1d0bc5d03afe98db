/**
 * The bounds a soak report is held to, shared by the command and the suite.
 *
 * RSS: the V8 heap grows in steps and is given back to the system only when
 * the GC decides to, so "flat" cannot mean equal. The bound is growth of at
 * most 48 MiB or 25 % of the start (whichever is larger) from the start to
 * the end: a leak of one retained kernel record, relay or reply per cycle or
 * per frame (1 000 cycles, 100 000 frames) exceeds it, GC timing does not.
 * Descriptors and sockets must be back to their start count, give or take 4
 * (etcd/gRPC and Docker keep-alive connections come and go).
 *
 * The fault soak's report is held to what it found on the way and to the
 * same leftovers, counted more widely (kernel network, firewall chains,
 * mounts, loop devices).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import Docker from 'dockerode';
import { listChains } from '../../src/adapters/iptables.js';
import { CHAIN_PREFIX, chainId } from '../../src/containers/firewall.js';
import { containersOf, reachable } from '../helpers/env.js';
import { loopsUnder, mountsUnder } from '../helpers/scratch-mounts.js';
import type { SoakReport } from './soak.js';

const MiB = 1024;
export const RSS_SLACK_KIB = 48 * MiB;
export const FD_SLACK = 4;

function rssBound(startKiB: number): number {
  return startKiB + Math.max(RSS_SLACK_KIB, startKiB * 0.25);
}

/** Every way the report breaks the bounds; empty when it passes. */
export function soakProblems(r: SoakReport): string[] {
  const problems: string[] = [];
  const start = r.figures[0];
  const end = r.figures.at(-1);
  if (start && end) {
    if (end.rssKiB > rssBound(start.rssKiB)) problems.push(`RSS grew from ${start.rssKiB} to ${end.rssKiB} KiB over the cycles`);
    if (end.fds > start.fds + FD_SLACK) problems.push(`open descriptors grew from ${start.fds} to ${end.fds}`);
    if (end.sockets > start.sockets + FD_SLACK) problems.push(`sockets grew from ${start.sockets} to ${end.sockets}`);
  }
  problems.push(...leftoverProblems(r.leftovers));
  if (!r.pingAfter) problems.push('the agent did not answer ping at the end');
  if (r.flood) {
    const f = r.flood;
    if (f.missing) problems.push(`${f.missing} of ${f.expected} requests with a parseable header got no reply`);
    if (f.duplicates) problems.push(`${f.duplicates} requests were answered more than once`);
    if (f.unexpected) problems.push(`${f.unexpected} replies answered no request`);
  }
  if (r.floodFigures) {
    const { before, after } = r.floodFigures;
    if (after.rssKiB > rssBound(before.rssKiB)) problems.push(`RSS grew from ${before.rssKiB} to ${after.rssKiB} KiB over the flood`);
    if (after.fds > before.fds + FD_SLACK) problems.push(`open descriptors grew from ${before.fds} to ${after.fds} over the flood`);
  }
  return problems;
}

/** What a soak left behind; the counts a soak does not take are absent. */
export interface Leftovers {
  containers: number;
  scratchDirs: number;
  openPorts: number;
  allCoresFree?: boolean;
  networks?: number;
  chains?: number;
  mounts?: number;
  loopDevices?: number;
}

/** Every leftover, in words: the soak and the fault soak hold their ends to these alike. */
function leftoverProblems(l: Leftovers): string[] {
  const problems: string[] = [];
  if (l.containers) problems.push(`${l.containers} container(s) left`);
  if (l.scratchDirs) problems.push(`${l.scratchDirs} scratch dir(s) left`);
  if (l.openPorts) problems.push(`${l.openPorts} kernel port(s) still accept connections`);
  if (l.allCoresFree === false) problems.push('a kernel asking for every core did not fit: cores were not given back');
  if (l.networks) problems.push(`${l.networks} kernel network(s) left`);
  if (l.chains) problems.push(`${l.chains} firewall chain(s) left`);
  if (l.mounts) problems.push(`${l.mounts} mount(s) left under the scratch root`);
  if (l.loopDevices) problems.push(`${l.loopDevices} loop device(s) left on the scratch root's files`);
  return problems;
}

/** The faults the fault soak (tests/soak/faults.ts) makes. */
export const FAULTS = ['sigkill', 'sigterm', 'ports', 'fill', 'restart', 'lifecycle'] as const;
export type Fault = (typeof FAULTS)[number];

/** What a fault soak did and found. */
export interface FaultSoakReport {
  seed: number;
  seconds: number;
  kernels: number;
  runs: { total: number; byKind: Record<string, number>; resumed: number; requeried: number };
  uploads: number;
  faults: Record<Fault, number>;
  /** Failures the soak made on purpose and got as the manual says, by kind. */
  expected: Record<string, number>;
  agentStarts: number;
  leftovers: Leftovers;
  problems: string[];
}

/** What the agent left once its kernels were destroyed and it stopped: containers, kernel network, chains, mounts, loop devices, homes, ports of its range that accept connections. */
export async function leftoversOf(agentId: string, scratch: string, range: { lo: number; hi: number }): Promise<Leftovers> {
  const networks = await new Docker().listNetworks({ filters: { label: [`io.compute-agent.agent=${agentId}`] } });
  const prefix = `${CHAIN_PREFIX}${chainId(agentId)}-`;
  const chains = [...(await listChains('filter')), ...(await listChains('mangle'))].filter((c) => c.startsWith(prefix));
  const homes = (await fs.readdir(scratch)).filter((n) => !n.startsWith('.'));
  const files = await fs.readdir(path.join(scratch, '.scratch-files', agentId)).catch(() => []);
  let openPorts = 0;
  for (let p = range.lo; p <= range.hi; p++) if (await reachable('127.0.0.1', p, 1000)) openPorts++;
  return {
    containers: (await containersOf(agentId)).length,
    scratchDirs: homes.length + files.length,
    openPorts,
    networks: networks.length,
    chains: chains.length,
    mounts: mountsUnder(scratch).length,
    loopDevices: loopsUnder(scratch).length,
  };
}

/**
 * Every way a fault soak failed: what it found on the way (a run whose
 * console is not what its code printed, a file changed or gone, a home or
 * kernel gone, a failure of a kind the manual does not promise), a fault
 * kind that never came (the soak was too short to mean anything), and the
 * leftovers.
 */
export function faultProblems(r: FaultSoakReport): string[] {
  const problems = [...r.problems];
  for (const [fault, n] of Object.entries(r.faults)) if (n === 0) problems.push(`no ${fault} fault came in ${r.seconds} s`);
  if (r.runs.total === 0) problems.push('no run ran');
  problems.push(...leftoverProblems(r.leftovers));
  return problems;
}
