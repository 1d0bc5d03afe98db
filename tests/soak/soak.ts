/**
 * The leak soak and the live frame flood against one agent run as a child
 * process: `cycles` create/execute/destroy cycles, then (or instead) a flood
 * of malformed frames; RSS and descriptors read from /proc at start, middle
 * and end, and the leftovers counted. The mocha suite runs a short form; the
 * full form is `npm run soak -- --cycles 1000 --frames 100000`.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { methods } from '../../src/rpc/methods.js';
import { containersOf, reachable, uniqueName } from '../helpers/env.js';
import { childAgent, cycle, procFigures, SMALL_KERNEL, type ChildAgent, type ProcFigures } from './drive.js';
import { flood, type FloodResult } from './frames.js';
import { waitRealTime } from '../helpers/real-time.js';

/** Options of {@link soak}. */
export interface SoakOptions {
  cycles: number;
  frames: number;
  /** Extra cluster settings of the agent (keys under `config/agent/`), e.g. the warm pool's `pool/types` and `pool/images`. */
  settings?: Record<string, string>;
  seed?: number;
  progress?: (line: string) => void;
}

/** What a soak measured. */
export interface SoakReport {
  figures: Array<{ at: string } & ProcFigures>;
  cycleMs: number;
  flood: FloodResult | null;
  floodFigures: { before: ProcFigures; after: ProcFigures } | null;
  leftovers: { containers: number; scratchDirs: number; openPorts: number; allCoresFree: boolean };
  /** Idle warm containers the pool keeps (with the pool on), not leftovers. */
  pooledIdle: number;
  /** Kernels the agent said it started from the warm pool (its log). */
  warmStarts: number;
  pingAfter: boolean;
}

/**
 * What the cycles left behind. With the warm pool on, the agent keeps idle
 * pooled containers (labelled `io.compute-agent.pool`, homes under `.pool/`)
 * on purpose; a claimed one keeps its label but has a claim record, so it
 * counts as a kernel. Waits (30 s at most) for the pool to finish a refill,
 * when a home exists whose container is still being made.
 */
async function leftovers(agent: ChildAgent): Promise<{ containers: number; scratchDirs: number; pooledIdle: number }> {
  const read = async () => {
    const all = await containersOf(agent.agentId);
    const pooled = all.filter((c) => c.Labels['io.compute-agent.pool']).length;
    const claims = (await fs.readdir(path.join(agent.scratch, '.pool-claims')).catch(() => [])).length;
    const poolHomes = (await fs.readdir(path.join(agent.scratch, '.pool')).catch(() => [])).length;
    const homes = (await fs.readdir(agent.scratch)).filter((e) => !e.startsWith('.')).length;
    const pooledIdle = pooled - claims;
    return { containers: all.length - pooledIdle, scratchDirs: homes + Math.max(0, poolHomes - pooledIdle), pooledIdle };
  };
  const deadline = Date.now() + 30_000;
  let r = await read();
  while (r.scratchDirs > 0 && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 500));
    r = await read();
  }
  return r;
}

/** Waits a little for the child to settle (timers, GC) and reads its figures. */
async function settled(pid: number): Promise<ProcFigures> {
  await waitRealTime(3000, 'the child settles (timers fire, GC runs) before its figures are read');
  return procFigures(pid);
}

/** Runs the soak on a fresh child agent; the caller runs the clean-ups (the test hooks, or the command's finally). */
export async function soak(options: SoakOptions): Promise<SoakReport> {
  const say = options.progress ?? (() => undefined);
  const nproc = (await import('node:os')).availableParallelism();
  const agent: ChildAgent = await childAgent({ settings: options.settings });
  const { client, pid } = agent;
  const figures: SoakReport['figures'] = [];
  const mark = async (at: string) => {
    const f = await settled(pid);
    figures.push({ at, ...f });
    say(`${at}: rss ${(f.rssKiB / 1024).toFixed(1)} MiB, fds ${f.fds}, sockets ${f.sockets}`);
  };

  // one cycle first, so that lazily built things (image cache, relay sockets code) count as the baseline
  const ports: number[] = [];
  // a failed cycle says what the agent logged last (its log is kept only in memory)
  const logged = (err: unknown) => {
    throw new Error(
      `${err instanceof Error ? err.message : String(err)}\nthe agent's last log lines:\n${agent.proc.stderr().slice(-6000)}`,
      {
        cause: err,
      },
    );
  };
  if (options.cycles > 0) ports.push(...(await cycle(client, uniqueName('warm')).catch(logged)));
  await mark('start');
  const t0 = Date.now();
  for (let i = 1; i <= options.cycles; i++) {
    ports.push(...(await cycle(client, uniqueName(`soak${i}`)).catch(logged)));
    if (ports.length > 400) ports.splice(0, ports.length - 400);
    if (i % 50 === 0) say(`cycle ${i}/${options.cycles} (${((Date.now() - t0) / i).toFixed(0)} ms each)`);
    if (i === Math.floor(options.cycles / 2)) await mark('middle');
  }
  const cycleMs = options.cycles ? (Date.now() - t0) / options.cycles : 0;
  if (options.cycles > 0) await mark('end of cycles');

  let floodResult: FloodResult | null = null;
  let floodFigures: SoakReport['floodFigures'] = null;
  if (options.frames > 0) {
    await flood(`tcp://127.0.0.1:${agent.port}`, Math.min(2000, options.frames), (options.seed ?? 1) + 1); // warm-up, not counted
    const before = await settled(pid);
    floodResult = await flood(`tcp://127.0.0.1:${agent.port}`, options.frames, options.seed ?? 1);
    const after = await settled(pid);
    floodFigures = { before, after };
    say(`flood: ${JSON.stringify(floodResult)}`);
    say(`flood rss ${(before.rssKiB / 1024).toFixed(1)} -> ${(after.rssKiB / 1024).toFixed(1)} MiB, fds ${before.fds} -> ${after.fds}`);
  }

  const pingAfter = (await client.call(methods.ping, 'still-there').catch(() => null)) === 'still-there';
  const { containers, scratchDirs, pooledIdle } = await leftovers(agent);
  const warmStarts = agent.proc.stderr().match(/kernel started from the warm pool/g)?.length ?? 0;
  let openPorts = 0;
  for (const p of ports) if (await reachable('127.0.0.1', p, 1000)) openPorts++;
  // every core free: a kernel asking for all of them (overcommit 1) fits only then
  let allCoresFree = true;
  if (options.cycles > 0 && !options.settings?.cpu_overcommit) {
    allCoresFree = await cycle(client, uniqueName('allcores'), { ...SMALL_KERNEL, limits: { cpu_slot: nproc, mem_slot: 256 } }).then(
      () => true,
      () => false,
    );
  }
  const report = {
    figures,
    cycleMs,
    flood: floodResult,
    floodFigures,
    leftovers: { containers, scratchDirs, openPorts, allCoresFree },
    pooledIdle,
    warmStarts,
    pingAfter,
  };
  say(
    `leftovers: ${JSON.stringify(report.leftovers)}, idle pooled containers (kept by design): ${pooledIdle}, kernels from the pool: ${warmStarts}, ping after: ${pingAfter}`,
  );
  return report;
}
