/**
 * Frozen warm containers and the pool's memory charge, against the real
 * Docker engine, etcd and kernel image: with `pool/freeze` idle pooled
 * containers wait paused (Docker's own state), stay paused across their
 * readiness checks, come back paused after an agent restart, and a claim
 * gets a running kernel that runs code; without it (the default) they run,
 * and turning it on applies live. A pool whose fill would exceed the node's
 * schedulable memory stops at the bound (said once), and kernels see the
 * pooled limits charged.
 */
import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import Docker from 'dockerode';
import { createLogger } from '../../src/log.js';
import type { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import { nodeMemoryMiB } from '../../src/node/memory.js';
import {
  eventually,
  remoteError,
  removeContainersOf,
  requireEtcd,
  restartAgent,
  startAgent,
  TEST_IMAGE_LANG,
  uniqueName,
} from '../helpers/env.js';
import { poolSettled, putPool } from '../helpers/pool.js';
import { consoleText, runToEnd } from '../helpers/run.js';

const docker = new Docker();
const config = (memMiB: number) => ({
  lang: TEST_IMAGE_LANG,
  limits: { cpu_slot: 1, mem_slot: memMiB },
  mounts: [],
  environ: { WHO: 'thawed' },
});
const paused = async (id: string) => (await docker.getContainer(id).inspect()).State.Paused;
const allPaused = async (ids: string[], want = true) => (await Promise.all(ids.map(paused))).every((p) => p === want);

describe('warm pool freeze and memory charge', function () {
  this.timeout(180_000);
  before(requireEtcd);

  it('with pool/freeze idle containers wait paused across readiness checks and a restart; a claim gets a running kernel', async () => {
    const t = await startAgent({}, (ns) => putPool(ns, { [TEST_IMAGE_LANG]: { small: 2 } }, { freeze: 'true', readiness_interval: '1' }));
    const { client, agent } = t;
    const warm = await poolSettled(agent, 2);
    await eventually('the pool to be paused', () => allPaused(warm));
    // a readiness check unpauses, pings and pauses again
    const t0 = Date.now();
    const pool = agent.warmPool!;
    await eventually(
      'a readiness check of each',
      () => [...pool.idle.values()].every((c) => c.checkedAt > t0 && !c.checking && c.frozen),
      20_000,
    );
    expect(await allPaused(warm)).to.equal(true);
    expect(pool.sizes()[0]).to.include({ idle: 2, frozen: 2 });

    const id = uniqueName('k');
    const info = await client.callWithTimeout(30_000, methods.create_kernel, id, config(128));
    expect(info.container_id).to.be.oneOf(warm);
    expect((await docker.getContainer(info.container_id).inspect()).State).to.include({ Running: true, Paused: false });
    expect(consoleText(await runToEnd(client, id, "import os; print(os.environ['WHO'], 6 * 7)"), 'stdout')).to.equal('thawed 42\n');

    // a stop leaves the idle ones paused; the next start unpauses them to adopt them, and pauses them again;
    // a claimed container found paused (an agent that died mid-claim; here paused by hand) is unpaused and adopted as its kernel
    const idle = await poolSettled(agent, 2);
    await eventually('the refilled pool to be paused', () => allPaused(idle));
    await docker.getContainer(info.container_id).pause();
    const { agent: again, client: client2 } = await restartAgent(t);
    expect(again.warmPool!.idle.size).to.equal(2);
    await eventually(
      'the adopted pool to be paused again',
      async () => (await allPaused(idle)) && [...again.warmPool!.idle.values()].every((c) => c.frozen),
    );
    expect(consoleText(await runToEnd(client2, id, 'print(6 * 7)'), 'stdout')).to.equal('42\n');
    // a paused kernel container (paused by hand) is destroyed all the same
    await docker.getContainer(info.container_id).pause();
    await client2.callWithTimeout(30_000, methods.destroy_kernel, id);
    expect(
      await docker
        .getContainer(info.container_id)
        .inspect()
        .then(
          () => 'exists',
          () => 'gone',
        ),
    ).to.equal('gone');
    removeContainersOf(t.agentId); // removes the paused ones too (a forced remove kills them frozen)
  });

  it('without pool/freeze idle containers run; turning it on pauses them live', async () => {
    const { agent, etcd } = await startAgent({}, (ns) => putPool(ns, { [TEST_IMAGE_LANG]: { small: 1 } }, { readiness_interval: '1' }));
    const [warm] = await poolSettled(agent, 1);
    const t0 = Date.now();
    await eventually('a readiness check', () => agent.warmPool!.idle.get(warm!)!.checkedAt > t0, 20_000);
    expect(await paused(warm!)).to.equal(false);
    expect(agent.warmPool!.idle.get(warm!)!.frozen).to.equal(false);
    await etcd.put('config/agent/pool/freeze').value('true');
    await eventually('the idle container to be paused', () => paused(warm!), 20_000);
  });

  it('stops filling at the schedulable memory, says so once, and charges the pooled limits to kernels, also after a restart', async () => {
    const capacity = 600; // MiB: room for two small (256 MiB) pooled containers, not the four asked for
    const lines: string[] = [];
    const stream = new PassThrough();
    stream.on('data', (b: Buffer) => lines.push(...b.toString('utf8').split('\n').filter(Boolean)));
    const t = await startAgent(
      {},
      async (ns) => {
        await ns.put('config/agent/mem_reserve').value(String(nodeMemoryMiB() - capacity));
        await putPool(ns, { [TEST_IMAGE_LANG]: { small: 4 } }, { check_interval: '0.2' });
      },
      createLogger({ level: 'info', format: 'json', stream }),
    );
    const { client, agent } = t;
    await poolSettled(agent, 2);
    const slots = async (c: AgentClient) => (await c.call(methods.get_node_stats)).slots.mem_free_mib;
    expect(await slots(client)).to.equal(capacity - 512);
    await agent.warmPool!.afterPasses(5); // several passes: no third fill, and one log line
    expect(agent.warmPool!.idle.size + agent.warmPool!.creating.size).to.equal(2);
    expect(lines.filter((l) => l.includes('the pool stops filling')).length).to.equal(1);

    // a cold kernel (300 MiB: the pooled type is too small) sees the pooled limits charged
    const cold = await remoteError(client.callWithTimeout(60_000, methods.create_kernel, uniqueName('k'), config(300)));
    expect(cold.remoteType).to.equal('agent.InsufficientResources');
    expect(String(cold.remoteArgs[0])).to.match(/300 MiB requested, 88 of 600 MiB/);
    // a claim moves the charge to the kernel (its own limit), not counted twice
    const id = uniqueName('k');
    await client.callWithTimeout(30_000, methods.create_kernel, id, config(128));
    expect(await slots(client)).to.equal(capacity - 256 - 128);

    // a restart rebuilds the same figures from the adopted kernel and pooled container
    const { agent: again, client: client2 } = await restartAgent(t);
    expect(await slots(client2)).to.equal(capacity - 256 - 128);
    await client2.call(methods.destroy_kernel, id); // the kernel's charge back: the pool refills to the bound
    await poolSettled(again, 2);
    expect(await slots(client2)).to.equal(capacity - 512);
    removeContainersOf(t.agentId);
  });
});
