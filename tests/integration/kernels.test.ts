/**
 * The kernel lifecycle against the real Docker engine, etcd and kernel
 * image: create/destroy round trip, idempotency and the creation limit,
 * rollback, re-adoption after SIGKILL, deaths behind the agent's back, idle
 * reaping, files, and a create/destroy soak.
 */
import { promises as fs, readdirSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import * as zmq from 'zeromq';
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import { type KernelInfo } from '../../src/rpc/results.js';
import {
  loopbackAgentFlags,
  containersOf,
  coresHeld,
  eventually,
  freePort,
  kernelIds,
  onCleanup,
  remoteError,
  removeContainersOf,
  requireEtcd,
  spawnAgent,
  startAgent,
  tempScratch,
  testEtcd,
  TEST_IMAGE_LANG,
  uniqueName,
} from '../helpers/env.js';
import { sink } from '../helpers/sink.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { waitRealTime } from '../helpers/real-time.js';
import { homesIn } from '../helpers/leftovers.js';

const docker = new Docker();
const config = (extra: Record<string, unknown> = {}) => ({
  lang: TEST_IMAGE_LANG,
  limits: { cpu_slot: 1, mem_slot: 256, gpu_slot: 0 },
  mounts: [],
  environ: { GREETING: 'hello world', A: '1' },
  ...extra,
});

describe('kernel lifecycle', function () {
  this.timeout(60_000);
  before(requireEtcd);

  it('creates a kernel with its limits, labels, home and ports, and destroys it leaving nothing', async () => {
    const s = await sink();
    const { client, agent, agentId } = await startAgent({}, async (ns) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
    });
    const id = uniqueName('k');
    const info = await client.call(methods.create_kernel, id, config());
    expect(info).to.include({ id, kernel_host: '127.0.0.1' });
    expect(info.cpu_set).to.have.length(1);

    const c = await docker.getContainer(info.container_id).inspect();
    expect(c.Name).to.equal(`/kernel.python.${id}`);
    expect(c.HostConfig.Memory).to.equal(256 * 1024 * 1024);
    expect(c.HostConfig.MemorySwap).to.equal(256 * 1024 * 1024);
    expect(c.HostConfig.CpusetCpus).to.equal(info.cpu_set.join(','));
    expect(c.Config.Labels).to.include({ 'io.compute-agent.agent': agentId, 'io.compute-agent.kernel-id': id });
    expect(c.Config.Env).to.include('LOCAL_USER_ID=1000');
    expect(c.Config.Env).to.include('OMP_NUM_THREADS=1');
    const scratch = path.join(agent.options.scratchRoot, id);
    expect(c.Mounts.find((m) => m.Destination === '/home/work')?.Source).to.equal(scratch);
    expect(await fs.readFile(path.join(scratch, '.config/environ.txt'), 'utf8')).to.equal('GREETING=hello world\nA=1\n');
    expect((await fs.stat(scratch)).uid).to.equal(1000);
    const published = [2000, 2001, 2002, 2003].map((p) => Number(c.NetworkSettings.Ports[`${p}/tcp`]![0]!.HostPort));
    expect(published).to.deep.equal([info.repl_in_port, info.repl_out_port, info.stdin_port, info.stdout_port]);

    const [stats, again] = await Promise.all([
      client.call(methods.destroy_kernel, id),
      client.call(methods.destroy_kernel, id, 'user-requested'),
    ]);
    expect(again).to.deep.equal(stats); // the second waited for the first
    expect(stats).to.have.keys(
      'cpu_used',
      'mem_max_bytes',
      'mem_cur_bytes',
      'net_rx_bytes',
      'net_tx_bytes',
      'io_read_bytes',
      'io_write_bytes',
      'io_max_scratch_size',
      'io_cur_scratch_size',
    );
    expect(await containersOf(agentId)).to.have.length(0);
    expect(
      await fs.stat(scratch).then(
        () => true,
        () => false,
      ),
    ).to.equal(false);
    expect(await coresHeld(client)).to.equal(0);
    await s.next('kernel_terminated');
    const names = s.events.map((e) => e.name).filter((n) => n.startsWith('kernel_'));
    expect(names).to.deep.equal(['kernel_creating', 'kernel_started', 'kernel_terminated']);
    const term = s.events.find((e) => e.name === 'kernel_terminated')!;
    expect(term.args.slice(0, 2)).to.deep.equal([id, 'user-requested']);
    // a second destroy answers nil and reports the kernel not found, so that a manager can finish its records
    const at = Date.now();
    expect(await client.call(methods.destroy_kernel, id)).to.equal(null);
    expect((await s.next('kernel_terminated', at)).args).to.deep.equal([id, 'not-found', null]);
  });

  it('is idempotent per kernel id, and runs at most create_concurrency creations at once', async () => {
    const { client, agent, agentId } = await startAgent({}, async (ns) => {
      await ns.put('config/agent/create_concurrency').value('2');
      await ns.put('config/agent/cpu_overcommit').value('4'); // 8 kernels on this 2-core machine
    });
    const id = uniqueName('k');
    const [a, b] = await Promise.all([client.call(methods.create_kernel, id, config()), client.call(methods.create_kernel, id, config())]);
    expect(b).to.deep.equal(a);
    expect(await client.call(methods.create_kernel, id, config())).to.deep.equal(a);
    expect(await containersOf(agentId)).to.have.length(1);
    await client.call(methods.destroy_kernel, id);

    const ids = Array.from({ length: 8 }, () => uniqueName('k'));
    const small = config({ limits: { cpu_slot: 1, mem_slot: 64 } });
    const infos = await Promise.all(ids.map((k) => client.callWithTimeout(60_000, methods.create_kernel, k, small)));
    expect(infos.map((i) => i.id)).to.deep.equal(ids);
    expect(agent.kernelService!.createSlots.peak).to.equal(2);
    expect(await containersOf(agentId)).to.have.length(8);
    expect(agent.kernelService!.cores.usage()).to.deep.equal({ 0: 4, 1: 4 }); // spread, never beyond the overcommit
    await client.call(methods.reset);
    expect(await containersOf(agentId)).to.have.length(0);
  });

  it('rolls back everything when a step after the scratch home fails', async () => {
    const { client, agent, agentId } = await startAgent({}, (etcd) =>
      etcd
        .put('config/agent/runner_ready_timeout')
        .value('3')
        .then(() => undefined),
    );
    const id = uniqueName('k');
    // A codec Python does not know stops the runner at start: the create fails after cores, home and container were taken.
    const err = await remoteError(client.call(methods.create_kernel, id, config({ environ: { PYTHONIOENCODING: 'no-such-codec' } })));
    expect(err.remoteType).to.equal('agent.KernelCreationFailed');
    expect(String(err.remoteArgs[0])).to.match(/runner did not come up .*printed last: .*no-such-codec/i);
    expect(await containersOf(agentId)).to.have.length(0);
    expect(homesIn(agent.options.scratchRoot)).to.deep.equal([]);
    expect(await coresHeld(client)).to.equal(0);

    const missing = await remoteError(client.call(methods.create_kernel, id, config({ lang: 'nosuch:1' })));
    expect(missing.remoteType).to.equal('agent.ImageNotFound');
    expect(String(missing.remoteArgs[0])).to.match(/lablup\/kernel-nosuch:1 is not on this node.*build it/);
    const bad = await remoteError(client.call(methods.create_kernel, id, config({ mounts: [['x', '..', 'y']] })));
    expect(bad.remoteType).to.equal('aiozmq.rpc.base.ParametersError');
    expect(homesIn(agent.options.scratchRoot)).to.deep.equal([]);
  });

  it('re-adopts 5 running kernels after SIGKILL with the same ports and cores, and leaves them running on SIGTERM', async () => {
    const namespace = uniqueName('test');
    const agentId = uniqueName('i-test');
    const { ns } = testEtcd(namespace);
    await ns.put('config/agent/cpu_overcommit').value('3'); // 5 kernels on this 2-core machine
    removeContainersOf(agentId);
    const scratch = await tempScratch();
    const port = await freePort();
    const args = await loopbackAgentFlags({ namespace, agentId, port, scratchRoot: scratch });
    const first = spawnAgent(args);
    await first.waitFor(/"message":"agent running"/);
    const client = new AgentClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 30_000 });
    onCleanup(() => client.close());
    const ids = Array.from({ length: 5 }, () => uniqueName('k'));
    const before: KernelInfo[] = await Promise.all(ids.map((id) => client.call(methods.create_kernel, id, config())));
    const doomed = await client.call(methods.create_kernel, 'doomed', config());
    await fs.writeFile(path.join(scratch, 'orphan-dir-marker'), ''); // a plain file: not a home, must stay
    await fs.mkdir(path.join(scratch, 'orphan', '.config'), { recursive: true }); // a home of no kernel: must go
    first.child.kill('SIGKILL');
    await first.exited;
    await docker.getContainer(doomed.container_id).kill(); // dies while no agent watches

    const s = await sink();
    await ns.put('nodes/manager/event_addr').value(s.addr);
    const second = spawnAgent(args);
    await second.waitFor(/"message":"agent running"/);
    expect(second.stderr()).to.match(/"running":5/);
    const dead = await s.next('kernel_terminated');
    expect(dead.args).to.deep.equal(['doomed', 'self-terminated', null]);
    const after = await Promise.all(ids.map((id) => client.call(methods.create_kernel, id, config())));
    expect(after).to.deep.equal(before);
    expect(await containersOf(agentId)).to.have.length(5);
    expect(homesIn(scratch).sort()).to.deep.equal([...ids, 'orphan-dir-marker'].sort());
    // the re-adopted kernels hold their cores again: 5 of the 6 places (2 cores x 3) are taken
    await client.call(methods.create_kernel, 'sixth', config());
    const full = await remoteError(client.call(methods.create_kernel, 'seventh', config()));
    expect(full.remoteType).to.equal('agent.InsufficientResources');
    await client.call(methods.destroy_kernel, 'sixth');
    expect(await client.call(methods.destroy_kernel, ids[0]!)).to.be.an('object');
    expect(await containersOf(agentId)).to.have.length(4);
    // a clean shutdown leaves the kernels running (reset is what kills them)
    second.child.kill('SIGTERM');
    expect(await second.exited).to.equal(0);
    const left = await containersOf(agentId);
    expect(left.map((c) => c.State)).to.deep.equal(['running', 'running', 'running', 'running']);
  });

  it('restarts a kernel on a new container, keeping its home and cores, while other calls wait; a failed restart leaves it as it was', async () => {
    const { client, agent, agentId } = await startAgent({}, (etcd) =>
      etcd
        .put('config/agent/runner_ready_timeout')
        .value('3')
        .then(() => undefined),
    );
    const id = uniqueName('k');
    const info = await client.call(methods.create_kernel, id, config());
    await client.call(methods.upload_file, id, 'keep.txt', Buffer.from('kept'));
    const [restarted, logs] = await Promise.all([
      client.call(methods.restart_kernel, id, config({ environ: { B: '2' } })),
      // get_logs once the restart is under way (list_kernels says so), so that it waits for it
      eventually(
        'the restart to begin',
        async () => (await client.call(methods.list_kernels)).find((k) => k.id === id)?.state === 'restarting',
        30_000,
        10,
      ).then(() => client.call(methods.get_logs, id)),
    ]);
    expect(logs).to.have.property('logs');
    expect(restarted).to.not.have.property('id');
    expect(restarted.container_id).to.not.equal(info.container_id);
    expect(restarted.cpu_set).to.deep.equal(info.cpu_set);
    expect(
      await docker
        .getContainer(info.container_id)
        .inspect()
        .then(
          () => 'exists',
          () => 'gone',
        ),
    ).to.equal('gone');
    const home = path.join(agent.options.scratchRoot, id);
    expect(await fs.readFile(path.join(home, 'keep.txt'), 'utf8')).to.equal('kept');
    expect(await fs.readFile(path.join(home, '.config/environ.txt'), 'utf8')).to.equal('B=2\n');
    expect(await coresHeld(client)).to.equal(1);
    expect(await client.call(methods.create_kernel, id, config())).to.deep.include({ container_id: restarted.container_id });

    // two restarts entering in the same tick run one after the other: one container at the end
    const svc = agent.kernelService!;
    const [r1, r2] = await Promise.all([svc.restart(id, config()), svc.restart(id, config())]);
    expect(r1.container_id).to.not.equal(r2.container_id);
    const left = await containersOf(agentId);
    expect(left.map((c) => c.Id)).to.deep.equal([r2.container_id]);

    // a restart whose new runner cannot start fails before the old container is touched: the kernel runs on as it was
    const failed = await remoteError(
      client.callWithTimeout(30_000, methods.restart_kernel, id, config({ environ: { PYTHONIOENCODING: 'no-such-codec' } })),
    );
    expect(failed.remoteType).to.equal('agent.KernelCreationFailed');
    expect(failed.message).to.match(/the kernel runs on as it was/);
    expect((await containersOf(agentId)).map((c) => c.Id)).to.deep.equal([r2.container_id]);
    expect(await fs.readFile(path.join(home, 'keep.txt'), 'utf8')).to.equal('kept');
    expect(await fs.readFile(path.join(home, '.config/environ.txt'), 'utf8')).to.match(/^GREETING=/); // r2's, put back
    expect(consoleText(await runToEnd(client, id, 'print(open("keep.txt").read())'), 'stdout')).to.equal('kept\n');
    expect(await coresHeld(client)).to.equal(1);
    await client.call(methods.destroy_kernel, id);
    expect(await containersOf(agentId)).to.have.length(0);
    expect(homesIn(agent.options.scratchRoot)).to.deep.equal([]);
    expect(await coresHeld(client)).to.equal(0);
  });

  it('closes its relays when it stops: the kernel keeps running and its runner has no stale peer', async () => {
    const { client, agent } = await startAgent();
    const id = uniqueName('k');
    const info = await client.call(methods.create_kernel, id, config());
    const out = await runToEnd(client, id, 'print("through the agent")');
    expect(consoleText(out, 'stdout')).to.equal('through the agent\n');
    await agent.stop();
    expect((await docker.getContainer(info.container_id).inspect()).State.Running).to.equal(true);

    // Speak to the runner directly, as a new agent would. A relay left open by the stopped agent would be a
    // second peer of the runner's PUSH socket, which deals records round-robin: some would never reach us.
    const push = new zmq.Push({ linger: 0 });
    const pull = new zmq.Pull({ linger: 0, receiveTimeout: 5000 }); // a record that went elsewhere fails the receive
    onCleanup(() => {
      push.close();
      pull.close();
    });
    push.connect(`tcp://${info.kernel_host}:${info.repl_in_port}`);
    pull.connect(`tcp://${info.kernel_host}:${info.repl_out_port}`);
    for (let i = 0; i < 8; i++) {
      await push.send(['code', `print(${i})`]);
      const records: string[] = [];
      while (records.at(-1)?.startsWith('finished') !== true) {
        const [type, payload] = await pull.receive().catch((err: unknown) => {
          throw new Error(`run ${i}: no further record within 5 s after ${JSON.stringify(records)}: ${String(err)}`);
        });
        records.push(`${String(type)}:${payload?.toString() ?? ''}`);
      }
      expect(records.join('|')).to.equal(`stdout:${i}\n|finished:{"exitCode": 0}`);
    }
  });

  it('reports a container killed behind its back as self-terminated and cleans up', async () => {
    const s = await sink();
    const { client } = await startAgent({}, async (ns) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
    });
    const id = uniqueName('k');
    const info = await client.call(methods.create_kernel, id, config());
    await docker.getContainer(info.container_id).kill();
    const term = await s.next('kernel_terminated', 0, 15_000);
    expect(term.args[0]).to.equal(id);
    expect(term.args[1]).to.equal('self-terminated');
    expect(term.args[2]).to.be.an('object');
    await eventually('the registry to forget it', async () => (await kernelIds(client)).length === 0);
    expect(await coresHeld(client)).to.equal(0);
  });

  it('destroys a kernel left unused for the idle timeout', async () => {
    const s = await sink();
    const { client } = await startAgent({ idleTimeout: 2 }, async (ns) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
    });
    const id = uniqueName('k');
    await client.call(methods.create_kernel, id, config());
    await waitRealTime(1200, 'part of the idle timeout passes before the use that resets it');
    await client.call(methods.get_logs, id); // use resets the clock
    const touched = Date.now();
    const term = await s.next('kernel_terminated', 0, 10_000);
    expect(term.args.slice(0, 2)).to.deep.equal([id, 'idle-timeout']);
    expect(Date.now() - touched).to.be.at.least(1500);
  });

  it('uploads, lists and downloads files in the home and refuses paths that leave it', async () => {
    const { client, agent } = await startAgent();
    const id = uniqueName('k');
    await client.call(methods.create_kernel, id, config());
    await client.call(methods.upload_file, id, 'sub/a.txt', Buffer.from('data'));
    expect(await fs.readFile(path.join(agent.options.scratchRoot, id, 'sub/a.txt'), 'utf8')).to.equal('data');
    const listing = await client.call(methods.list_files, id, 'sub');
    expect(JSON.parse(listing.files).map((f: { filename: string }) => f.filename)).to.deep.equal(['a.txt']);
    const tar = await client.call(methods.download_file, id, 'sub/a.txt');
    expect(Buffer.isBuffer(tar)).to.equal(true);
    expect(tar.includes(Buffer.from('data'))).to.equal(true);

    // a symlink to / planted by the kernel
    await fs.symlink('/', path.join(agent.options.scratchRoot, id, 'root'));
    const marker = `/tmp/${uniqueName('escape')}`;
    for (const bad of ['../x', '/etc/passwd', `root${marker}`, '/home/work/../../tmp/x']) {
      const err = await remoteError(client.call(methods.upload_file, id, bad, Buffer.from('pwned')));
      expect(err.remoteType, bad).to.equal('agent.InvalidPath');
    }
    expect(
      await fs.stat(marker).then(
        () => true,
        () => false,
      ),
    ).to.equal(false);
    expect((await remoteError(client.call(methods.list_files, id, 'root/etc'))).remoteType).to.equal('agent.InvalidPath');
    expect((await remoteError(client.call(methods.download_file, id, 'root/etc/passwd'))).remoteType).to.equal('agent.InvalidPath');
    const logs = await client.call(methods.get_logs, id);
    expect(logs).to.have.property('logs').that.is.a('string');
  });

  // 8 in the suite, 100 in `npm run drills` (KERNEL_SOAK_CYCLES)
  const soakCycles = 2 * Math.ceil((Number(process.env.KERNEL_SOAK_CYCLES) || 8) / 2);
  it(`soak: ${soakCycles} create/destroy cycles leave no container, home or core, and no file descriptors`, async function () {
    this.timeout(300_000);
    const { client, agent, agentId } = await startAgent();
    const fds = () => readdirSync('/proc/self/fd').length;
    const cycle = async (i: number) => {
      const id = `soak-${i}-${uniqueName('k')}`;
      await client.callWithTimeout(60_000, methods.create_kernel, id, config({ limits: { cpu_slot: 1, mem_slot: 64 } }));
      await client.callWithTimeout(60_000, methods.destroy_kernel, id);
    };
    await cycle(-1); // warm up sockets and caches before counting
    const fdBefore = fds();
    for (let i = 0; i < soakCycles; i += 2) await Promise.all([cycle(i), cycle(i + 1)]);
    expect(await containersOf(agentId)).to.have.length(0);
    expect(homesIn(agent.options.scratchRoot)).to.deep.equal([]);
    expect(await coresHeld(client)).to.equal(0);
    expect(fds()).to.be.at.most(fdBefore + 5);
  });
});
