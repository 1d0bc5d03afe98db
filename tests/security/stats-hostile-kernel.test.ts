/**
 * A hostile kernel against the stats path (kernel -> host: the agent reads
 * each kernel's cgroup, /proc and scratch home for the managers' Redis,
 * docs/wire-contract.rst "Stats in Redis"): a kernel that fills its home
 * with 100 000 files makes its own scratch walk slow; the agent's read of it
 * times out (its figures unknown for the round, never 0), and the other
 * kernels' stats go on at every round. Real kernels, real Redis.
 */
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { methods } from '../../src/rpc/methods.js';
import { eventually, onCleanup, requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { ownRedis } from '../helpers/own-redis.js';
import { consoleText, runToEnd } from '../helpers/run.js';

const config = { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 128 }, mounts: [], environ: {} };

describe('security: a kernel cannot stall the stats of the others', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('a home of 100 000 files leaves that kernel unknown; the other kernel is written every round', async () => {
    const redis = await ownRedis();
    const a = await startAgent({}, async (ns) => {
      await ns.put('nodes/redis').value(redis.addr);
      await ns.put('config/agent/stats_interval').value('0.3');
      await ns.put('config/agent/stats_read_timeout').value('0.15');
    });
    const [host, port] = redis.addr.split(':');
    const r = new Redis({ host, port: Number(port), db: 0 });
    onCleanup(() => void r.disconnect());
    const hostile = uniqueName('k-hostile');
    const calm = uniqueName('k-calm');
    await Promise.all([hostile, calm].map((id) => a.client.callWithTimeout(60_000, methods.create_kernel, id, config)));
    const made = await runToEnd(
      a.client,
      hostile,
      'import os\nos.makedirs("/home/work/many", exist_ok=True)\nfor i in range(100000): open(f"/home/work/many/{i}", "w").close()\nprint("made")',
      { timeoutMs: 120_000 },
    );
    expect(consoleText(made, 'stdout')).to.equal('made\n');
    // From now on every walk of the hostile home outlasts the bound: it is unknown in every round (never written, below);
    // the calm kernel is read within it, but for at most one round where the loaded machine made its small read outlast 150 ms.
    const writer = a.agent.statsWriter!;
    await eventually('a round that found the hostile kernel unknown', () => writer.snapshot().lastRound.unknown >= 1, 20_000);
    const from = writer.snapshot().totals;
    await Promise.all([r.del(hostile), r.del(calm)]);
    await eventually('five more rounds', () => writer.snapshot().totals.rounds >= from.rounds + 6, 20_000);
    const to = writer.snapshot().totals;
    expect(
      to.unknown - from.unknown,
      'kernels unknown in the rounds (the hostile one once a round, the calm one at most once)',
    ).to.be.within(to.rounds - from.rounds, to.rounds - from.rounds + 1);
    expect(await r.exists(calm), "the calm kernel's hash, written again").to.equal(1);
    expect(await r.exists(hostile), 'the hostile kernel is never written as known').to.equal(0);
  });
});
