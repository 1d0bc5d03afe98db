/**
 * Fault drill: SIGKILL the agent at each named fault point of a restart_kernel
 * and of a destroy_kernel (src/util/faults.ts, armed through AGENT_FAULTS),
 * start it again, and check what docs/kernels.rst ("What survives what")
 * promises: the kernel is listed and runs (its old container or its new one)
 * with its home intact, or it is gone and kernel_terminated was sent; never a
 * home deleted without a word. (Kills during create_kernel: drill-kill.test.ts.)
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { containersOf, kernelIds, requireEtcd, uniqueName } from '../helpers/env.js';
import { sink } from '../helpers/sink.js';
import { childAgent, runCode, SMALL_KERNEL, type ChildAgent } from '../soak/drive.js';
import { homesIn } from '../helpers/leftovers.js';

/** Starts an agent armed to die at `point`, with a kernel that has a file in its home; returns both. */
async function armedAgentWithKernel(point: string): Promise<{ first: ChildAgent; id: string; containerId: string }> {
  const first = await childAgent({ env: { AGENT_FAULTS: `${point}=kill` } });
  const id = uniqueName('k');
  const info = await first.client.callWithTimeout(120_000, methods.create_kernel, id, SMALL_KERNEL);
  await first.client.call(methods.upload_file, id, 'keep.txt', Buffer.from('kept'));
  return { first, id, containerId: info.container_id };
}

/** Waits for the agent's SIGKILL at its fault point (the call it was making never answers). */
async function killedAt(first: ChildAgent, call: Promise<unknown>): Promise<void> {
  const answer = call.then(
    () => 'answered',
    () => 'no answer',
  );
  expect(await first.proc.exited).to.equal('SIGKILL');
  first.client.close(); // fails the call still waiting, unless its answer came before the kill
  expect(await answer).to.equal('no answer');
}

describe('drill: SIGKILL during restart_kernel and destroy_kernel', function () {
  this.timeout(180_000);
  before(requireEtcd);

  const restartPoints: Array<[string, 'old' | 'new']> = [
    ['restart.after-new-created', 'old'],
    ['restart.after-new-ready', 'old'],
    ['restart.after-old-removed', 'new'],
  ];
  for (const [point, survivor] of restartPoints) {
    it(`killed at ${point}: the restarted agent lists the kernel on its ${survivor} container, home intact`, async () => {
      const { first, id, containerId } = await armedAgentWithKernel(point);
      await killedAt(first, first.client.callWithTimeout(120_000, methods.restart_kernel, id, SMALL_KERNEL));

      const again = await childAgent(first.options);
      expect(await kernelIds(again.client)).to.deep.equal([id]);
      const containers = await containersOf(again.agentId);
      expect(containers, 'one container for the kernel').to.have.length(1);
      if (survivor === 'old') expect(containers[0]!.Id).to.equal(containerId);
      else expect(containers[0]!.Id).to.not.equal(containerId);
      expect(containers[0]!.Names[0], 'the kernel name (a restart names its new container apart until the old is gone)').to.match(
        new RegExp(`^/kernel\\..*\\.${id}$`),
      );
      expect(await fs.readFile(path.join(again.scratch, id, 'keep.txt'), 'utf8')).to.equal('kept');
      expect(await runCode(again.client, id, 'print(open("keep.txt").read())')).to.equal('kept\n');
      await again.client.call(methods.destroy_kernel, id);
      expect(await containersOf(again.agentId)).to.have.length(0);
    });
  }

  it('killed at destroy.after-container-removed: the restarted agent removes the home and sends kernel_terminated', async () => {
    const { first, id } = await armedAgentWithKernel('destroy.after-container-removed');
    await killedAt(first, first.client.callWithTimeout(120_000, methods.destroy_kernel, id));
    expect(await containersOf(first.agentId)).to.have.length(0);
    expect(homesIn(first.scratch)).to.deep.equal([id]); // the kill came between the container and the home

    const s = await sink();
    await first.etcd.put('nodes/manager').value('mgr');
    await first.etcd.put('nodes/manager/event_addr').value(s.addr);
    const again = await childAgent(first.options);
    const ended = await s.next('kernel_terminated', 0, 60_000);
    expect(ended.args.slice(0, 2)).to.deep.equal([id, 'self-terminated']);
    expect(await kernelIds(again.client)).to.deep.equal([]);
    expect(homesIn(again.scratch)).to.deep.equal([]);
  });

  it('killed at create.after-home-made: the restarted agent removes the home and sends kernel_terminated', async () => {
    const first = await childAgent({ env: { AGENT_FAULTS: 'create.after-home-made=kill' } });
    const id = uniqueName('k');
    await killedAt(first, first.client.callWithTimeout(120_000, methods.create_kernel, id, SMALL_KERNEL));
    expect(await containersOf(first.agentId)).to.have.length(0);
    expect(homesIn(first.scratch)).to.deep.equal([id]);

    const s = await sink();
    await first.etcd.put('nodes/manager').value('mgr');
    await first.etcd.put('nodes/manager/event_addr').value(s.addr);
    const again = await childAgent(first.options);
    const ended = await s.next('kernel_terminated', 0, 60_000);
    expect(ended.args.slice(0, 2)).to.deep.equal([id, 'self-terminated']);
    expect(await kernelIds(again.client)).to.deep.equal([]);
    expect(homesIn(again.scratch)).to.deep.equal([]);
  });
});
