/**
 * A destroy always finishes, against the real Docker engine: with Docker's
 * container removals hanging (a proxy of the test's own holds every DELETE),
 * destroy_kernel still answers within destroy_timeout with
 * agent.DestroyPending saying what it did (the container is killed), the
 * kernel's cores stay held while its container exists, and once Docker
 * removes again the agent finishes: the container goes, the cores come back
 * and kernel_terminated is sent. A process ignoring SIGTERM does not delay it.
 */
import Docker from 'dockerode';
import { expect } from 'chai';
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import {
  loopbackAgentFlags,
  eventually,
  freePort,
  onCleanup,
  remoteError,
  removeContainersOf,
  requireEtcd,
  spawnAgent,
  testEtcd,
  TEST_IMAGE_LANG,
  uniqueName,
} from '../helpers/env.js';
import { dockerProxy } from '../helpers/docker-proxy.js';
import { sink } from '../helpers/sink.js';
import { runToEnd } from '../helpers/run.js';

const docker = new Docker();

describe('destroys that always finish', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('answers DestroyPending within destroy_timeout while Docker cannot remove, and finishes once it can', async () => {
    const proxy = await dockerProxy();
    const namespace = uniqueName('test');
    const agentId = uniqueName('i-test');
    const { ns } = testEtcd(namespace);
    const s = await sink();
    await ns.put('nodes/manager/event_addr').value(s.addr);
    await ns.put('config/agent/destroy_timeout').value('3');
    removeContainersOf(agentId);
    const port = await freePort();
    const agent = spawnAgent(await loopbackAgentFlags({ namespace, agentId, port }), { DOCKER_HOST: proxy.host });
    await agent.waitFor(/"message":"agent running"/);
    const client = new AgentClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 20_000 }); // well past the 3 s bound
    onCleanup(() => client.close());
    const id = uniqueName('k');
    const info = await client.callWithTimeout(60_000, methods.create_kernel, id, {
      lang: TEST_IMAGE_LANG,
      limits: { cpu_slot: 1, mem_slot: 128 },
      mounts: [],
      environ: {},
    });
    // a process that ignores SIGTERM: a graceful stop would wait for it
    await runToEnd(client, id, 'import subprocess; subprocess.Popen(["bash", "-c", "trap \\"\\" TERM; sleep 1000"])');
    const free0 = (await client.call(methods.get_node_stats)).slots.cpu_free;

    proxy.holdDeletes(true);
    const pending = await remoteError(client.call(methods.destroy_kernel, id));
    expect(pending.remoteType).to.equal('agent.DestroyPending');
    expect(pending.retryable).to.equal(true);
    expect(String(pending.remoteArgs[0])).to.match(
      /not gone after 3 s \(destroy_timeout; tried: .*remove: Docker did not answer within .*kill: done/,
    );
    expect(proxy.held()).to.be.at.least(1);
    expect((await docker.getContainer(info.container_id).inspect()).State.Running).to.equal(false); // killed meanwhile
    expect((await remoteError(client.call(methods.get_logs, id))).remoteType).to.equal('agent.KernelNotFound');
    expect((await client.call(methods.get_node_stats)).slots.cpu_free).to.equal(free0); // its cores are held while it exists
    const again = await remoteError(client.call(methods.destroy_kernel, id)); // waits a bound, then says so again
    expect(again.remoteType).to.equal('agent.DestroyPending');
    expect(s.events.filter((e) => e.name === 'kernel_terminated')).to.have.length(0);

    proxy.holdDeletes(false);
    const done = await s.next('kernel_terminated', 0, 60_000);
    expect(done.args.slice(0, 2)).to.deep.equal([id, 'user-requested']);
    await eventually(
      'the container is gone',
      async () => (await docker.listContainers({ all: true, filters: { id: [info.container_id] } })).length === 0,
    );
    expect((await client.call(methods.get_node_stats)).slots.cpu_free).to.equal(free0 + 1);
    expect(await client.call(methods.destroy_kernel, id)).to.equal(null); // gone: nothing to destroy
  });
});
