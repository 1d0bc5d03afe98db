/**
 * sync_kernels against the real agent, Docker and etcd: an id the manager
 * lists that the agent lacks is answered missing and reported
 * already-terminated; a kernel the manager does not list is destroyed as
 * not-found-in-manager once sync_grace has passed, and not before. The
 * self-sync removes a container with this agent's label that no kernel
 * accounts for, and never another agent's.
 */
import { expect } from 'chai';
import Docker from 'dockerode';
import { methods } from '../../src/rpc/methods.js';
import {
  containersOf,
  eventually,
  onCleanup,
  requireEtcd,
  startAgent,
  TEST_IMAGE_LANG,
  TEST_IMAGE_PREFIX,
  uniqueName,
} from '../helpers/env.js';
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

describe('self-sync', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it("removes a container with this agent's label that no kernel accounts for, and leaves another agent's alone", async () => {
    const { client, agentId } = await startAgent({}, (ns) =>
      ns
        .put('config/agent/self_sync_interval')
        .value('1')
        .then(() => undefined),
    );
    const kept = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, kept, config);
    const docker = new Docker();
    const forge = async (agent: string) => {
      const made = await docker.createContainer({
        Image: TEST_IMAGE_PREFIX + TEST_IMAGE_LANG,
        Entrypoint: ['sleep', '300'],
        name: uniqueName('forged'),
        Labels: { 'io.compute-agent.agent': agent, 'io.compute-agent.kernel-id': uniqueName('forgotten') },
      });
      // the self-sync may take this agent's forged container between its create and its start: what the test waits for
      await made.start().catch((err: { statusCode?: number }) => {
        if (agent !== agentId || (err.statusCode !== 404 && err.statusCode !== 409)) throw err;
      });
      return made.id;
    };
    const otherAgent = uniqueName('i-other');
    const others = await forge(otherAgent);
    onCleanup(() =>
      docker
        .getContainer(others)
        .remove({ force: true })
        .catch(() => undefined),
    );
    const forgotten = await forge(agentId);
    await eventually(
      'the self-sync removes the forgotten container',
      async () => (await docker.listContainers({ all: true, filters: { id: [forgotten] } })).length === 0,
      30_000,
      200,
    );
    expect((await containersOf(agentId)).map((c) => c.Labels['io.compute-agent.kernel-id'])).to.deep.equal([kept]);
    expect((await docker.getContainer(others).inspect()).State.Running).to.equal(true);
    expect(await client.call(methods.create_kernel, kept, config)).to.have.property('id', kept); // the kernel is untouched
  });
});
