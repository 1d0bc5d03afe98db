/**
 * The fast path of a warm-pool claim against the real Docker engine, etcd
 * and kernel image: idle containers wait pinned where the next claims' cores
 * are, a claim of exactly those limits needs no live update (read from
 * Docker's own event stream), one that differs gets it, a restart right
 * after a claim (whose rename runs after the reply) gets its name, and the
 * relay the pool kept open becomes the kernel's (output files, exec timeout).
 */
import { expect } from 'chai';
import Docker from 'dockerode';
import { methods } from '../../src/rpc/methods.js';
import { type KernelInfo } from '../../src/rpc/results.js';
import { eventually, requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { poolSettled, putPool } from '../helpers/pool.js';
import { runToEnd } from '../helpers/run.js';
import { sink } from '../helpers/sink.js';

const docker = new Docker();
const MiB = 1024 * 1024;
const config = (memMiB: number) => ({
  lang: TEST_IMAGE_LANG,
  limits: { cpu_slot: 1, mem_slot: memMiB },
  mounts: [],
  environ: { WHO: 'claim' },
});

/** Docker's `update` events of a container between two times (s, fractional). */
async function updateEvents(containerId: string, since: number, until: number): Promise<unknown[]> {
  const stream = await docker.getEvents({ since, until, filters: { container: [containerId], event: ['update'] } });
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as unknown);
}

/** Docker's view of a container's limits. */
async function limits(containerId: string): Promise<{ cpus: string; mem: number; swap: number; shares: number }> {
  const c = await docker.getContainer(containerId).inspect();
  return {
    cpus: c.HostConfig.CpusetCpus ?? '',
    mem: c.HostConfig.Memory ?? 0,
    swap: c.HostConfig.MemorySwap ?? 0,
    shares: c.HostConfig.CpuShares ?? 0,
  };
}

describe('warm pool claim', function () {
  this.timeout(180_000);
  before(requireEtcd);

  it('pins idle containers where the next claims go; an exact claim skips the live update, another gets it; a restart right after a claim works', async () => {
    const { client, agent } = await startAgent({}, (ns) => putPool(ns, { [TEST_IMAGE_LANG]: { small: 2 } }));
    const warm = await poolSettled(agent, 2);
    const cores = agent.kernelService!.cores;
    const nodeCores = [...cores.loads().keys()];
    // idle: the type's memory, swap off, a kernel's weight, one core each, spread over the node's first cores
    const pinned = await Promise.all(warm.map(limits));
    for (const l of pinned) expect(l).to.deep.include({ mem: 256 * MiB, swap: 256 * MiB, shares: 1024 });
    expect(pinned.map((l) => l.cpus).sort()).to.deep.equal(nodeCores.length > 1 ? ['0', '1'] : ['0', '0']);

    // a claim of 1 core and the type's memory gets core 0: the container pinned there, with no update
    const t0 = Date.now() / 1000;
    const exact: KernelInfo = await client.callWithTimeout(30_000, methods.create_kernel, uniqueName('k'), config(256));
    expect(exact.cpu_set).to.deep.equal([0]);
    expect(warm[pinned.findIndex((l) => l.cpus === '0')]).to.equal(exact.container_id);
    expect(await limits(exact.container_id)).to.deep.equal({ cpus: '0', mem: 256 * MiB, swap: 256 * MiB, shares: 1024 });
    expect(await updateEvents(exact.container_id, t0, Date.now() / 1000 + 0.5)).to.deep.equal([]);

    // a claim with less memory than the type: the other container, updated to the exact limit before the reply
    const t1 = Date.now() / 1000;
    const other: KernelInfo = await client.callWithTimeout(30_000, methods.create_kernel, uniqueName('k'), config(128));
    expect(other.container_id).to.be.oneOf(warm);
    expect(other.container_id).to.not.equal(exact.container_id);
    expect(await limits(other.container_id)).to.deep.equal({
      cpus: other.cpu_set.join(','),
      mem: 128 * MiB,
      swap: 128 * MiB,
      shares: 1024,
    });
    expect(await updateEvents(other.container_id, t1, Date.now() / 1000 + 0.5)).to.have.length(1);

    // a restart straight after a claim gets a cold container under the kernel's name
    for (const k of [exact, other]) await client.call(methods.destroy_kernel, k.id);
    const id = uniqueName('k');
    await poolSettled(agent, 2);
    const claimed = await client.callWithTimeout(30_000, methods.create_kernel, id, config(256));
    expect(warm).to.not.include(claimed.container_id);
    const restarted = await client.callWithTimeout(60_000, methods.restart_kernel, id, config(256));
    const c = await docker.getContainer(restarted.container_id).inspect();
    expect(c.Name).to.equal(`/kernel.python.${id}`);
    expect(c.Config.Labels['io.compute-agent.pool']).to.equal(undefined);
    await eventually(
      'the claimed container to be gone',
      async () =>
        !(await docker
          .getContainer(claimed.container_id)
          .inspect()
          .then(
            () => true,
            () => false,
          )),
    );
  });

  it("hands the pool's open relay to the kernel: finished runs list output files, and the exec timeout destroys the kernel", async () => {
    const s = await sink();
    const { client, agent } = await startAgent({}, async (ns) => {
      await putPool(ns, { [TEST_IMAGE_LANG]: { small: 1 } });
      await ns.put('nodes/manager/event_addr').value(s.addr);
      await ns.put('config/agent/exec_timeout').value('2');
    });
    const [warm] = await poolSettled(agent, 1);
    const id = uniqueName('k');
    expect((await client.callWithTimeout(30_000, methods.create_kernel, id, config(256))).container_id).to.equal(warm);
    const wrote = await runToEnd(
      client,
      id,
      'import os\nos.makedirs("/home/work/.output", exist_ok=True)\nopen("/home/work/.output/a.txt", "w").write("12345")',
    );
    expect(wrote.at(-1)!.files).to.deep.equal([{ name: 'a.txt', size: 5 }]);
    const replies = await runToEnd(client, id, 'import time\ntime.sleep(30)', { flush: 1 });
    expect(replies.at(-1)!.status).to.equal('exec-timeout');
    const term = await s.next('kernel_terminated', 0, 10_000);
    expect(term.args.slice(0, 2)).to.deep.equal([id, 'exec-timeout']);
  });
});
