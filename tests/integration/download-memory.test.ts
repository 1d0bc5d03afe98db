/**
 * download_file's memory, measured on the real CLI agent (its own process,
 * so its RSS is the agent's alone): three concurrent downloads of a 200 MiB
 * file stay within the bound (download_concurrency archives, each held once
 * plus its encoded reply) and the RSS comes back near its baseline after.
 * The figures are printed (README, Files); pings, sent meanwhile from a
 * process of their own (tests/helpers/pinger.ts), are timed and printed, not
 * asserted (no timings in tests).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import { startPinger } from '../helpers/ping-process.js';
import {
  loopbackAgentFlags,
  eventually,
  freePort,
  onCleanup,
  removeContainersOf,
  requireEtcd,
  spawnAgent,
  tempScratch,
  testEtcd,
  TEST_IMAGE_LANG,
  uniqueName,
} from '../helpers/env.js';

const MiB = 1024 * 1024;
const FILE = 200 * MiB;

/** VmRSS and VmHWM (the peak since the last reset) of a process, in MiB. */
async function memory(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)![1]) / 1024;
  return { rss: Math.round(kib('VmRSS')), peak: Math.round(kib('VmHWM')) };
}

describe('download memory', function () {
  this.timeout(180_000);
  before(requireEtcd);

  it('holds at most download_concurrency archives for three concurrent 200 MiB downloads and gives the memory back', async () => {
    const namespace = uniqueName('test');
    const agentId = uniqueName('i-test');
    const { ns } = testEtcd(namespace);
    await ns.put('config/agent/download_concurrency').value('1');
    removeContainersOf(agentId);
    const scratch = await tempScratch();
    const port = await freePort();
    const agent = spawnAgent(await loopbackAgentFlags({ namespace, agentId, port, scratchRoot: scratch }));
    await agent.waitFor(/"message":"agent running"/);
    const pid = agent.child.pid!;
    const client = new AgentClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 120_000 });
    onCleanup(() => client.close());
    const id = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, id, {
      lang: TEST_IMAGE_LANG,
      limits: { cpu_slot: 1, mem_slot: 256 },
      mounts: [],
      environ: {},
    });
    const fh = await fs.open(path.join(scratch, id, 'big.bin'), 'w');
    const block = Buffer.alloc(MiB, 7);
    for (let i = 0; i < FILE / MiB; i++) await fh.write(block);
    await fh.close();
    await client.call(methods.download_file, id, '.config'); // warm up the code paths
    const base = await memory(pid);
    await fs.writeFile(`/proc/${pid}/clear_refs`, '5'); // the peak starts from here

    // pings from a process of its own, so that this process's decoding of the replies does not count
    const pinger = await startPinger(port);
    const archives = await Promise.all([0, 1, 2].map(() => client.callWithTimeout(120_000, methods.download_file, id, 'big.bin')));
    const pings = await pinger.stop();
    for (const a of archives) expect(a.length).to.equal(512 + FILE + 1024);
    const during = await memory(pid);
    const after =
      (await eventually(
        'the agent gives the archives back',
        async () => {
          const m = await memory(pid);
          return m.rss - base.rss < 64 ? m : null;
        },
        60_000,
        500,
      ).catch(async () => null)) ?? (await memory(pid));
    console.log(
      `      download memory (MiB): baseline RSS ${base.rss}, peak ${during.peak} (+${during.peak - base.rss}), after ${after.rss} (+${after.rss - base.rss}); ${pings.n} pings meanwhile from another process, p50 ${pings.p50.toFixed(1)} ms, p99 ${pings.p99.toFixed(1)} ms, max ${pings.max.toFixed(1)} ms`,
    );
    // download_concurrency 1: one archive (200 MiB) at a time, sent without a copy (src/wire/headroom.ts), plus slack
    expect(during.peak - base.rss).to.be.below(FILE / MiB + 200);
    expect(after.rss - base.rss).to.be.below(64);
  });
});
