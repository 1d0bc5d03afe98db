/**
 * A hostile manager against the idempotent destroy_kernel (manager -> host,
 * docs/wire-contract.rst "RPC"): a destroy of an id this agent does not hold
 * answers nil and reports not-found, and touches nothing on the host: not
 * another agent's kernel on the same Docker, not a folder of that name in
 * the scratch root, not a container of that name. Ids that are not kernel
 * ids (paths, oversize) are refused before anything is looked up.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import Docker from 'dockerode';
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { WireErrors } from '../../src/errors.js';
import { remoteError, requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { sink } from '../helpers/sink.js';

const docker = new Docker();

describe('security: a manager cannot destroy what this agent does not hold', function () {
  this.timeout(90_000);
  before(requireEtcd);

  it("answers nil for another agent's kernel and a folder of that name, leaving both; refuses ids that are paths", async () => {
    const s = await sink();
    const victim = await startAgent();
    const a = await startAgent({}, async (ns) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
    });
    const theirs = uniqueName('k');
    const info = await victim.client.callWithTimeout(60_000, methods.create_kernel, theirs, {
      lang: TEST_IMAGE_LANG,
      limits: { cpu_slot: 1, mem_slot: 128 },
      mounts: [],
      environ: {},
    });
    const decoy = path.join(a.agent.options.scratchRoot, 'decoy-home');
    await fs.mkdir(decoy);
    await fs.writeFile(path.join(decoy, 'keep'), 'mine');

    for (const [i, id] of [theirs, 'decoy-home'].entries()) {
      expect(await a.client.call(methods.destroy_kernel, id), id).to.equal(null);
      expect((await s.next('kernel_terminated', 0, 5000, i + 1)).args, id).to.deep.equal([id, 'not-found', null]);
    }
    expect((await docker.getContainer(info.container_id).inspect()).State.Running, "the other agent's kernel").to.equal(true);
    expect(await fs.readFile(path.join(decoy, 'keep'), 'utf8')).to.equal('mine');
    for (const bad of ['../decoy-home', '/etc', 'x'.repeat(65), '']) {
      expect((await remoteError(a.client.call(methods.destroy_kernel, bad))).remoteType, JSON.stringify(bad)).to.equal(
        WireErrors.Parameters,
      );
    }
    expect(s.events.filter((e) => e.name === 'kernel_terminated')).to.have.length(2); // the refused ones report nothing
    expect(await victim.client.call(methods.ping, 'alive')).to.equal('alive');
  });
});
