/**
 * sync_kernels against the real agent, Docker and etcd: an id the manager
 * lists that the agent lacks is answered missing and reported
 * already-terminated; a kernel the manager does not list is destroyed as
 * not-found-in-manager once sync_grace has passed, and not before.
 */
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { containersOf, requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { sink } from '../helpers/sink.js';

const config = { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 128 }, mounts: [], environ: {} };

describe('sync_kernels', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('reports a missing id and destroys an extra kernel after the grace period', async () => {
    const s = await sink();
    const { client, agentId } = await startAgent({}, async (ns) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
      await ns.put('config/agent/sync_grace').value('1');
    });
    const kept = uniqueName('k');
    const extra = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, kept, config);
    await client.callWithTimeout(60_000, methods.create_kernel, extra, config);
    const gone = uniqueName('lost');
    const result = await client.call(methods.sync_kernels, [kept, gone]);
    expect(result).to.deep.equal({ missing: [gone], extra: [extra], destroyed: [], pending: [extra] });
    const reported = await s.next('kernel_terminated');
    expect(reported.args).to.deep.equal([gone, 'already-terminated', null]);
    // no further sync needed: the agent looks again when the grace runs out
    const destroyed = await s.next('kernel_terminated', reported.at + 1, 30_000);
    expect(destroyed.args.slice(0, 2)).to.deep.equal([extra, 'not-found-in-manager']);
    const left = await containersOf(agentId);
    expect(left.map((c) => c.Labels['io.compute-agent.kernel-id'])).to.deep.equal([kept]);
    expect(await client.call(methods.sync_kernels, [kept])).to.deep.equal({ missing: [], extra: [], destroyed: [], pending: [] });
    const bad = await client.call(methods.sync_kernels, 'not a list' as unknown as string[]).catch((e: Error) => e);
    expect(String(bad)).to.match(/ParametersError.*must be a list/);
  });
});
