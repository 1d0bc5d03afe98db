/**
 * The cost of the kernels' stats in the managers' Redis with 300 kernels
 * (docs/wire-contract.rst, "Stats in Redis"): one round of the agent's own
 * StatsWriter (src/stats/) over 300 kernel sources, written to a
 * redis-server of the run, as the 2018 hashes (HMSET + EXPIRE per kernel)
 * against the modern keys (SET per kernel, and the node key). 300 real
 * kernels do not fit this machine, so the sources are real cgroup, /proc and
 * scratch reads of 3 real kernels of the run's agent, 100 sources each
 * (each its own kernel id, its own moving statistics and hash). Per round:
 * the CPU of this process (every thread: the scratch walks' lstat calls run
 * on libuv's pool) and the commands Redis counted (INFO's
 * total_commands_processed, less the INFO call itself).
 */
import { Redis } from 'ioredis';
import { inBatches, type Figure, type Side } from '../harness.js';
import { KERNEL_LANG, type BenchEnv } from '../lib/env.js';
import { freePort } from '../lib/ports.js';
import { methods } from '../../src/rpc/methods.js';
import { msgpackCodec } from '../../src/wire/codec.js';
import { silentLogger } from '../../src/log.js';
import { CgroupStats } from '../../src/kernels/stats.js';
import { NodeMonitor } from '../../src/node/stats.js';
import { StatsWriter, type StatsSource } from '../../src/stats/stats-writer.js';

const KERNELS = 3;

async function redisServer(env: BenchEnv): Promise<{ addr: string; commands(): Promise<number> }> {
  const port = await freePort();
  const dir = await env.tempDir('bench-redis');
  const child = env.spawnChild('redis-server', [
    '--bind',
    '127.0.0.1',
    '--port',
    String(port),
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'no',
  ]);
  await env.waitForOutput(child, /Ready to accept connections/);
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: false });
  env.onClose(() => void client.disconnect());
  return {
    addr: `127.0.0.1:${port}`,
    async commands() {
      const m = /total_commands_processed:(\d+)/.exec(await client.info('stats'));
      return Number(m?.[1] ?? NaN);
    },
  };
}

function writerSide(label: string, writer: StatsWriter, redis: { commands(): Promise<number> }): Side {
  return {
    label,
    async measure() {
      const n0 = await redis.commands();
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const round = await writer.writeNow();
      const wallMs = performance.now() - t0;
      const c = process.cpuUsage(c0);
      const commands = (await redis.commands()) - n0 - 1; // the second INFO counts itself
      if (round.kernels !== 300) throw new Error(`${label}: a round wrote ${round.kernels} kernels, not 300`);
      return { cpu: [(c.user + c.system) / 1000], commands: [commands], wall: [wallMs], unknown: [round.unknown] };
    },
  };
}

export const statsWriterFigure: Figure = {
  name: 'stats-300',
  title: 'Stats in Redis with 300 kernels: the 2018 hashes vs the modern keys',
  measures:
    "one round of the agent's stats writer over 300 kernel sources (real cgroup, /proc and scratch reads of 3 real kernels, 100 sources each) " +
    "into a redis-server of the run: this process's CPU per round (every thread) and the commands Redis counted",
  target: 'none set by the issue: the figures are reported (CPU and Redis commands per stats interval with 300 kernels)',
  sides: ['2018 hashes', 'modern keys'],
  metrics: [
    { key: 'cpu', label: 'CPU per round', unit: 'ms', better: 'lower' },
    { key: 'commands', label: 'Redis commands per round', unit: 'commands', better: 'lower' },
    { key: 'wall', label: 'round duration', unit: 'ms', better: 'lower' },
  ],
  rounds: { full: 8, short: 2 },
  async prepare(env) {
    const agent = await env.agent();
    const ids = Array.from({ length: KERNELS }, (_, i) => `${env.runId}-stats-${i}`);
    const targets: Array<{ containerId: string; pid: number | null; scratchDir: string }> = [];
    await inBatches(ids, KERNELS, async (id) => {
      const info = await agent.client.callWithTimeout(120_000, methods.create_kernel, id, {
        lang: KERNEL_LANG,
        limits: { cpu_slot: 0.5, mem_slot: 128 },
        mounts: [],
        environ: {},
      });
      env.onClose(() =>
        agent.client.call(methods.destroy_kernel, id).then(
          () => undefined,
          () => undefined,
        ),
      );
      const inspect = await env.docker.getContainer(info.container_id).inspect();
      const home = inspect.Mounts.find((m) => m.Destination === '/home/work')?.Source;
      if (!home) throw new Error(`kernel ${id} has no home mount`);
      targets.push({ containerId: info.container_id, pid: inspect.State.Pid || null, scratchDir: home });
    });
    const redis = await redisServer(env);
    const node = new NodeMonitor('/');
    const writer = (generation: 'legacy' | 'modern') => {
      const cg = new CgroupStats();
      const sources: StatsSource[] = Array.from({ length: 300 }, (_, i) => ({
        id: `${env.runId}-${generation}-${i}`,
        generation,
        memLimitBytes: 128 << 20,
        read: () => cg.sample(targets[i % KERNELS]!),
      }));
      const w = new StatsWriter({
        agentId: `${env.runId}-agent`,
        log: silentLogger(),
        codec: msgpackCodec,
        sources: () => sources,
        node: async () => {
          const n = await node.read();
          const used = (t: number, f: number) => t - f;
          return {
            cpuPct: n.cpu_pct,
            cores: 2,
            memUsed: used(n.mem_total_bytes, n.mem_available_bytes),
            memTotal: n.mem_total_bytes,
            diskUsed: used(n.disk_total_bytes, n.disk_free_bytes),
            diskTotal: n.disk_total_bytes,
          };
        },
        intervalSec: () => 0, // rounds only when the figure asks
        readTimeoutSec: () => 2,
        expirySec: () => 30,
      });
      (generation === 'legacy' ? w.legacy : w.modern).setTarget({ addr: redis.addr });
      env.onClose(() => w.close());
      return w;
    };
    const legacy = writer('legacy');
    const modern = writer('modern');
    // connected, and one untimed round each (the first reads locate each cgroup)
    for (const w of [legacy, modern]) {
      for (let i = 0; i < 100 && w.snapshot().legacy.rounds + w.snapshot().modern.rounds === 0; i++) {
        await w.writeNow();
        if (w.snapshot().legacy.rounds + w.snapshot().modern.rounds === 0) await new Promise((r) => setTimeout(r, 50));
      }
    }
    return { a: writerSide('2018 hashes', legacy, redis), b: writerSide('modern keys', modern, redis), close: async () => {} };
  },
  verdict(m) {
    const cpu = m.cpu!;
    const cmds = m.commands!;
    return {
      met: true,
      detail:
        `no target (reported only): a round over 300 kernels costs ${cpu.a.median.toFixed(1)} ms of CPU for the 2018 hashes ` +
        `(${cmds.a.median.toFixed(0)} Redis commands) and ${cpu.b.median.toFixed(1)} ms for the modern keys (${cmds.b.median.toFixed(0)} commands), ` +
        'once per stats_interval (5 s)',
    };
  },
};
