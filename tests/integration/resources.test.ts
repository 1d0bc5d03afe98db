/**
 * Resources that add up, against the real Docker engine and etcd: kernels'
 * memory limits are charged like cores up to the node's schedulable memory
 * (total minus mem_reserve), the heartbeat reports the totals and
 * get_node_stats what is free, requests the node could never hold are
 * refused non-retryably, and an agent restart rebuilds the same books.
 */
import os from 'node:os';
import { expect } from 'chai';
import { Agent } from '../../src/agent.js';
import { validateOptions } from '../../src/config/options.js';
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import { nodeMemoryMiB } from '../../src/node/memory.js';
import {
  agentOptions,
  onCleanup,
  remoteError,
  removeContainersOf,
  requireEtcd,
  startAgent,
  testEtcd,
  testLogger,
  TEST_IMAGE_LANG,
  uniqueName,
} from '../helpers/env.js';
import { sink } from '../helpers/sink.js';

const CAPACITY = 600; // MiB schedulable: the test sets mem_reserve to the node's memory minus this
const config = (limits: Record<string, number>, extra: Record<string, unknown> = {}) => ({
  lang: TEST_IMAGE_LANG,
  limits,
  mounts: [],
  environ: {},
  ...extra,
});

describe('resource accounting', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('charges memory like cores, refuses the impossible non-retryably, reports totals and free figures, and rebuilds them after a restart', async () => {
    const s = await sink();
    const settings = async (ns: ReturnType<typeof testEtcd>['ns']) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
      await ns.put('config/agent/cpu_overcommit').value('4'); // 8 core places on 2 cores: memory is what runs out
      await ns.put('config/agent/mem_reserve').value(String(nodeMemoryMiB() - CAPACITY));
      await ns.put('config/agent/heartbeat_interval').value('1');
    };
    const { client, agent, agentId, namespace } = await startAgent({}, settings);
    const slots = async (c: AgentClient) => (await c.call(methods.get_node_stats)).slots;
    const cpuTotal = 4 * os.availableParallelism();
    expect(await slots(client)).to.deep.equal({ cpu_total: cpuTotal, cpu_free: cpuTotal, mem_total_mib: CAPACITY, mem_free_mib: CAPACITY });
    const beat = await s.next('instance_heartbeat');
    expect(beat.args[0]).to.include({ mem_slots: CAPACITY, cpu_slots: cpuTotal });

    const a = uniqueName('k');
    const b = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, a, config({ cpu_slot: 1, mem_slot: 256 }));
    await client.callWithTimeout(60_000, methods.create_kernel, b, config({ cpu_slot: 1, mem_slot: 300 }));
    expect(await slots(client)).to.deep.equal({
      cpu_total: cpuTotal,
      cpu_free: cpuTotal - 2,
      mem_total_mib: CAPACITY,
      mem_free_mib: CAPACITY - 556,
    });

    // could fit once a kernel goes: retryable; never fits: a ParametersError with the node's figures
    const later = await remoteError(
      client.callWithTimeout(60_000, methods.create_kernel, uniqueName('k'), config({ cpu_slot: 1, mem_slot: 64 })),
    );
    expect(later.remoteType).to.equal('agent.InsufficientResources');
    expect(later.retryable).to.equal(true);
    expect(String(later.remoteArgs[0])).to.match(/not enough memory.*64 MiB requested, 44 of 600 MiB/);
    const refusals: Array<[Record<string, unknown>, RegExp]> = [
      [config({ cpu_slot: 1, mem_slot: 16 * 1024 * 1024 }), /asks for 16777216 MiB/],
      [config({ cpu_slot: 1, mem_slot: CAPACITY + 1 }), /asks for 601 MiB/],
      [config({ cpu_slot: 1000, mem_slot: 32 }), /asks for 1000 cores/],
      [config({ mem_slot: 32 }, { cpu_set: [] }), /cpu_set must name at least one core/],
      [config({ mem_slot: 32 }, { cpu_set: [7] }), /core\(s\) 7 this node does not have/],
    ];
    for (const [cfg, why] of refusals) {
      const err = await remoteError(client.callWithTimeout(60_000, methods.create_kernel, uniqueName('k'), cfg));
      expect(err.remoteType, String(why)).to.equal('aiozmq.rpc.base.ParametersError');
      expect(err.retryable).to.equal(false);
      expect(String(err.remoteArgs[0]))
        .to.match(why)
        .and.match(/this node has \d+ cores .* and 600 MiB schedulable memory/);
    }
    // a create that fails after taking gives everything back
    const broken = await remoteError(
      client.callWithTimeout(
        60_000,
        methods.create_kernel,
        uniqueName('k'),
        config({ cpu_slot: 1, mem_slot: 32 }, { bootstrap_script: 'exit 3\n' }),
      ),
    );
    expect(broken.remoteType).to.equal('agent.KernelCreationFailed');
    expect((await slots(client)).mem_free_mib).to.equal(CAPACITY - 556);

    // a restart to a larger limit that does not fit leaves the kernel as it was; one that fits is charged
    const tooBig = await remoteError(client.callWithTimeout(60_000, methods.restart_kernel, a, config({ cpu_slot: 1, mem_slot: 400 })));
    expect(tooBig.remoteType).to.equal('agent.InsufficientResources');
    await client.callWithTimeout(60_000, methods.restart_kernel, a, config({ cpu_slot: 1, mem_slot: 128 }));
    expect((await slots(client)).mem_free_mib).to.equal(CAPACITY - 428);

    await client.call(methods.destroy_kernel, b);
    expect(await slots(client)).to.deep.equal({
      cpu_total: cpuTotal,
      cpu_free: cpuTotal - 1,
      mem_total_mib: CAPACITY,
      mem_free_mib: CAPACITY - 128,
    });
    const after = Date.now();
    const beat2 = await s.next('instance_heartbeat', after);
    expect(beat2.args[0]).to.include({ mem_slots: CAPACITY, cpu_slots: cpuTotal }); // totals stay put

    // a clean stop leaves the kernel running; a new agent of the same id re-adopts it and rebuilds the books
    await client.callWithTimeout(60_000, methods.create_kernel, b, config({ cpu_slot: 1, mem_slot: 300 }));
    const figures = await slots(client);
    await agent.stop();
    const raw = await agentOptions({ agentId, namespace, scratchRoot: agent.options.scratchRoot });
    const again = new Agent(await validateOptions(raw), testLogger());
    onCleanup(() => again.stop());
    await again.start();
    const client2 = new AgentClient(`tcp://127.0.0.1:${raw.agentPort}`, { timeoutMs: 5000 });
    onCleanup(() => client2.close());
    expect(await slots(client2)).to.deep.equal(figures);
    expect(figures.mem_free_mib).to.equal(CAPACITY - 428);
    const full = await remoteError(
      client2.callWithTimeout(60_000, methods.create_kernel, uniqueName('k'), config({ cpu_slot: 1, mem_slot: 200 })),
    );
    expect(full.remoteType).to.equal('agent.InsufficientResources');
    await client2.call(methods.destroy_kernel, a);
    await client2.call(methods.destroy_kernel, b);
    expect(await slots(client2)).to.deep.equal({
      cpu_total: cpuTotal,
      cpu_free: cpuTotal,
      mem_total_mib: CAPACITY,
      mem_free_mib: CAPACITY,
    });
    removeContainersOf(agentId);
  });
});
