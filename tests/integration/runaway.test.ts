/**
 * The runaway-kernel drill: one kernel prints without end to a client that
 * walked away (held back at its source once 16 MiB wait for the client),
 * another forks without end (held at the pids limit); meanwhile the agent answers every
 * ping, a third kernel still runs code, the agent's memory stays bounded, and
 * everything is destroyed afterwards. The ping latencies are printed (the
 * machine is shared, so only generous bounds are asserted).
 */
import { promises as fs } from 'node:fs';
import { expect } from 'chai';
import Docker from 'dockerode';
import { methods } from '../../src/rpc/methods.js';
import { MAX_PENDING_BYTES } from '../../src/relay/output.js';
import { containersOf, coresHeld, eventually, requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { waitRealTime } from '../helpers/real-time.js';

const config = (memMiB: number) => ({ lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: memMiB }, mounts: [], environ: {} });
const FLOOD = 'while True:\n    print("x" * 1000)';
const FORK_BOMB = 'import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass';
const PIDS_LIMIT = 200;

/** The pids cgroup files of a container (cgroup v1 or v2), or null when neither is found. */
async function pidsFile(containerId: string, name: string): Promise<string | null> {
  for (const dir of [
    `/sys/fs/cgroup/pids/docker/${containerId}`,
    `/sys/fs/cgroup/system.slice/docker-${containerId}.scope`,
    `/sys/fs/cgroup/docker/${containerId}`,
  ]) {
    const text = await fs.readFile(`${dir}/${name}`, 'utf8').catch(() => null);
    if (text !== null) return text;
  }
  return null;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

describe('runaway kernel drill', function () {
  this.timeout(180_000);
  before(requireEtcd);

  it('a flooding and a fork-bombing kernel hit their limits while pings, another kernel and the agent stay responsive', async () => {
    const { client, agentId } = await startAgent({}, async (ns) => {
      await ns.put('config/agent/cpu_overcommit').value('3'); // three kernels on a 2-core machine
      await ns.put('config/agent/kernel_pids_limit').value(String(PIDS_LIMIT));
    });
    const [flood, bomb, calm] = [uniqueName('flood'), uniqueName('bomb'), uniqueName('calm')];
    const infos = await Promise.all([
      client.callWithTimeout(60_000, methods.create_kernel, flood, config(256)),
      client.callWithTimeout(60_000, methods.create_kernel, bomb, config(512)),
      client.callWithTimeout(60_000, methods.create_kernel, calm, config(256)),
    ]);
    for (const id of [flood, bomb, calm]) await runToEnd(client, id, '%ping'); // runners are up
    const rssBefore = process.memoryUsage().rss;

    // Start both runaways and walk away from them (no `continue`).
    const f = await client.callWithTimeout(30_000, methods.execute, 2, flood, null, 'query', FLOOD, {}, 0.5);
    expect(f.status).to.equal('continued');
    const b = await client.callWithTimeout(30_000, methods.execute, 2, bomb, null, 'query', FORK_BOMB, {}, 0.5);
    expect(b.status).to.equal('continued');

    // Ping for 5 s, one after the other, while both run; every ping must be answered.
    const latencies: number[] = [];
    let maxRss = rssBefore;
    const calmRun = (async () => {
      await waitRealTime(2000, 'the calm kernel runs its code well into the flood and the fork bomb');
      return consoleText(await runToEnd(client, calm, 'print(6 * 7)', { timeoutMs: 60_000 }), 'stdout');
    })();
    const until = Date.now() + 5_000;
    while (Date.now() < until) {
      const t0 = process.hrtime.bigint();
      expect(await client.callWithTimeout(10_000, methods.ping, 'p')).to.equal('p');
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      maxRss = Math.max(maxRss, process.memoryUsage().rss);
      await waitRealTime(20, 'pings paced through the 5 s window under load');
    }
    expect(await calmRun).to.equal('42\n');

    // The fork bomb is held at the pids limit (when the host's cgroup files can be read).
    const current = await pidsFile(infos[1].container_id, 'pids.current');
    if (current !== null) {
      expect(Number(current)).to.be.at.most(PIDS_LIMIT);
      expect(Number(current)).to.be.at.least(PIDS_LIMIT / 2);
      const events = await pidsFile(infos[1].container_id, 'pids.events');
      if (events !== null) expect(Number(/max (\d+)/.exec(events)?.[1] ?? 0)).to.be.above(0); // forks were refused
    }
    // The flood was held back at its source: the next reply has at most the cap (plus one record), nothing was dropped.
    const later = await client.callWithTimeout(30_000, methods.execute, 2, flood, f.runId, 'continue', '', {}, 0.1);
    const heldBytes = consoleText([later], 'stdout').length;
    expect(later.status).to.equal('continued');
    expect(heldBytes).to.be.at.most(MAX_PENDING_BYTES + 1024 * 1024);
    const lines = consoleText([later], 'stdout').split('\n').slice(1, -1); // whole lines between the cut ends
    expect(lines.length).to.be.above(1000);
    expect(lines.every((l) => l === 'x'.repeat(1000))).to.equal(true); // in order, none lost or mangled

    const floodLogs = (await new Docker().getContainer(infos[0].container_id).logs({ stdout: true, stderr: true })).toString('latin1');
    const sorted = [...latencies].sort((x, y) => x - y);
    const summary = {
      pings: sorted.length,
      p50Ms: +percentile(sorted, 50).toFixed(2),
      p99Ms: +percentile(sorted, 99).toFixed(2),
      maxMs: +sorted.at(-1)!.toFixed(2),
      rssGrowthMiB: Math.round((maxRss - rssBefore) / 1024 / 1024),
      pidsCurrent: current?.trim() ?? 'unreadable',
      floodBytesHeld: heldBytes,
      floodRunnerExits: floodLogs.match(/runner exited with status \d+/g) ?? [],
    };
    console.log(`      runaway drill: ${JSON.stringify(summary)}`);
    expect(sorted.length).to.be.above(20);
    expect(summary.rssGrowthMiB).to.be.below(400); // without the back-pressure the flood grows it by about 50 MiB a second
    expect(summary.floodRunnerExits).to.deep.equal([]); // the runner's writes wait for room: its memory stays bounded too

    await Promise.all([flood, bomb, calm].map((id) => client.callWithTimeout(60_000, methods.destroy_kernel, id)));
    await eventually('every container to be gone', async () => (await containersOf(agentId)).length === 0, 30_000, 200);
    expect(await coresHeld(client)).to.equal(0);
  });
});
