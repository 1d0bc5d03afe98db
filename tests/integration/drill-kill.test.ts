/**
 * Fault drill: SIGKILL the agent in the middle of a create_kernel, restart it
 * with the same id, scratch root and namespace, and check that nothing is
 * orphaned.
 *
 * "Orphan" here: a container, scratch home or core allocation that no kernel
 * of the restarted agent holds. A create whose reply never went out leaves
 * either a running container, which re-adoption keeps as a kernel (the
 * manager's retried create_kernel, idempotent per id, then gets that very
 * kernel back), or a container that never started / a bare scratch home,
 * which re-adoption removes. Either way, after the retry there is exactly one
 * container and one scratch home for the id, and after destroying it none and
 * every core is free again.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { containersOf, eventually, requireEtcd, uniqueName } from '../helpers/env.js';
import { childAgent, runCode, SMALL_KERNEL, type ChildAgent } from '../soak/drive.js';
import { homesIn } from '../helpers/leftovers.js';

const nproc = (await import('node:os')).availableParallelism();

/** Kill points: when the creation has reached them, the agent gets SIGKILL. */
const points: Array<[string, (a: ChildAgent, id: string) => Promise<boolean>]> = [
  [
    'the scratch home exists',
    async (a, id) =>
      fs.stat(path.join(a.scratch, id)).then(
        () => true,
        () => false,
      ),
  ],
  ['the container exists (created, maybe not started)', async (a) => (await containersOf(a.agentId)).length > 0],
  ['the container runs', async (a) => (await containersOf(a.agentId)).some((c) => c.State === 'running')],
];

describe('drill: SIGKILL during create_kernel', function () {
  this.timeout(240_000);
  before(requireEtcd);

  for (const [point, reached] of points) {
    it(`leaves no orphan and the retried create succeeds when killed once ${point}`, async () => {
      const first = await childAgent();
      const id = uniqueName('k');
      const pending = first.client.callWithTimeout(120_000, methods.create_kernel, id, SMALL_KERNEL).catch((err: unknown) => err);
      await eventually(point, () => reached(first, id), 60_000, 5);
      first.proc.child.kill('SIGKILL');
      expect(await first.proc.exited).to.equal('SIGKILL');
      first.client.close();
      // the kill came before the reply (for the last point the reply may just have made it; the drill holds either way)
      if (!point.includes('runs')) expect(await pending, 'create_kernel must not have replied').to.be.instanceOf(Error);

      const again = await childAgent(first.options);
      const info = await again.client.callWithTimeout(120_000, methods.create_kernel, id, SMALL_KERNEL);
      const containers = await containersOf(again.agentId);
      expect(
        containers.map((c) => c.Id),
        'one container, the kernel the retry returned',
      ).to.deep.equal([info.container_id]);
      expect(homesIn(again.scratch)).to.deep.equal([id]);
      expect(await runCode(again.client, id, 'print("alive")')).to.equal('alive\n');

      await again.client.call(methods.destroy_kernel, id);
      expect(await containersOf(again.agentId)).to.have.length(0);
      expect(homesIn(again.scratch)).to.deep.equal([]);
      // every core is free again: a kernel asking for all of them fits (overcommit 1)
      const all = uniqueName('all');
      await again.client.callWithTimeout(120_000, methods.create_kernel, all, {
        ...SMALL_KERNEL,
        limits: { cpu_slot: nproc, mem_slot: 256 },
      });
      await again.client.call(methods.destroy_kernel, all);
    });
  }
});
