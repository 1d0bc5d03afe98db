/**
 * The warm pool against the real Docker engine, etcd and kernel image: fill
 * and claim, cold fallback, live resizing from etcd, an image rebuilt under
 * its tag, zombies, re-adoption after SIGKILL, and the metrics file.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import { type KernelInfo, type RunResult } from '../../src/rpc/results.js';
import {
  loopbackAgentFlags,
  containersOf,
  coresHeld,
  eventually,
  freePort,
  onCleanup,
  removeContainersOf,
  requireEtcd,
  spawnAgent,
  startAgent,
  tempScratch,
  testEtcd,
  TEST_IMAGE_LANG,
  TEST_IMAGE_PREFIX,
  uniqueName,
} from '../helpers/env.js';
import { parsePrometheus, sample } from '../helpers/prometheus.js';
import { poolSettled, putPool } from '../helpers/pool.js';
import { capturedLog } from '../helpers/log-capture.js';

const docker = new Docker();
const LANG = TEST_IMAGE_LANG;
const config = (limits: { cpu_slot: number; mem_slot: number }, environ: Record<string, string> = {}) => ({
  lang: LANG,
  limits,
  mounts: [],
  environ,
});
const settled = poolSettled;

/** The pooled containers of an agent in Docker (idle and claimed). */
async function pooledContainers(agentId: string): Promise<Docker.ContainerInfo[]> {
  return (await containersOf(agentId)).filter((c) => c.Labels['io.compute-agent.pool'] !== undefined);
}

async function run(client: AgentClient, id: string, code: string): Promise<string> {
  let r: RunResult = await client.callWithTimeout(30_000, methods.execute, 2, id, null, 'query', code, {});
  const out: string[] = [];
  for (;;) {
    out.push(...(r.console ?? []).map((e) => String(e[1])));
    if (r.status !== 'continued') return out.join('');
    r = await client.callWithTimeout(30_000, methods.execute, 2, id, r.runId, 'continue', '', {});
  }
}

describe('warm pool', function () {
  this.timeout(180_000);
  before(requireEtcd);

  it('fills a pool of 2; two creates claim them with the requested limits and environ; the pool refills to 2', async () => {
    const { client, agent, agentId } = await startAgent({}, (ns) => putPool(ns, { [LANG]: { small: 2 } }));
    const warm = await settled(agent, 2);
    const ids = [uniqueName('k'), uniqueName('k')];
    const infos: KernelInfo[] = await Promise.all(
      ids.map((id) =>
        client.callWithTimeout(30_000, methods.create_kernel, id, config({ cpu_slot: 1, mem_slot: 128 }, { GREETING: 'hello pool' })),
      ),
    );
    expect(infos.map((i) => i.container_id).sort()).to.deep.equal([...warm].sort());
    expect(infos.flatMap((i) => i.cpu_set).sort()).to.deep.equal([0, 1]);
    for (const [i, info] of infos.entries()) {
      const c = await docker.getContainer(info.container_id).inspect();
      expect(c.HostConfig.Memory).to.equal(128 * 1024 * 1024);
      expect(c.HostConfig.MemorySwap).to.equal(128 * 1024 * 1024);
      expect(c.HostConfig.CpusetCpus).to.equal(info.cpu_set.join(','));
      expect(c.HostConfig.CpuShares).to.equal(1024);
      // renamed just after the reply (the name is cosmetic)
      await eventually(
        'the claimed container to carry the kernel name',
        async () => (await docker.getContainer(info.container_id).inspect()).Name === `/kernel.python.${ids[i]}`,
      );
      const published = [2000, 2001, 2002, 2003].map((p) => Number(c.NetworkSettings.Ports[`${p}/tcp`]![0]!.HostPort));
      expect(published).to.deep.equal([info.repl_in_port, info.repl_out_port, info.stdin_port, info.stdout_port]);
      const home = path.join(agent.options.scratchRoot, ids[i]!);
      expect(await fs.readFile(path.join(home, '.config/environ.txt'), 'utf8')).to.equal('GREETING=hello pool\n');
      // the environ reaches the code, the home renamed under the running container is still its /home/work, and no name was left behind
      await client.call(methods.upload_file, ids[i]!, 'note.txt', Buffer.from('from the agent'));
      const out = await run(
        client,
        ids[i]!,
        "import os\nprint(os.environ['GREETING'], os.environ['OMP_NUM_THREADS'], open('/home/work/note.txt').read())",
      );
      expect(out).to.equal('hello pool 1 from the agent\n');
      expect(await run(client, ids[i]!, "print(sorted(k for k in globals() if not k.startswith('__')))")).to.equal("['os']\n"); // the user's import only
      expect(
        await run(
          client,
          ids[i]!,
          "import subprocess; print(subprocess.run('echo $GREETING', shell=True, capture_output=True, text=True).stdout)",
        ),
      ).to.equal('hello pool\n\n');
      // the terminal's shell, started before the claim, was replaced by one with the kernel's environment
      let cursor = (await client.call(methods.terminal_read, ids[i]!, 0, 0)).cursor;
      await client.call(methods.terminal_write, ids[i]!, Buffer.from('echo "env:$GREETING:$OMP_NUM_THREADS"\n'));
      let text = '';
      await eventually(
        'the terminal to echo the environ',
        async () => {
          const chunk = await client.call(methods.terminal_read, ids[i]!, cursor, 1);
          cursor = chunk.cursor;
          text += chunk.data.toString('utf8');
          return /env:hello pool:1/.test(text);
        },
        15_000,
        10,
      ).catch((e: Error) => {
        throw new Error(`${e.message}; terminal said ${JSON.stringify(text)}`);
      });
    }
    expect(await coresHeld(client)).to.equal(2);
    const refilled = await settled(agent, 2);
    expect(refilled.filter((id) => warm.includes(id))).to.deep.equal([]);
    expect(await pooledContainers(agentId)).to.have.length(4);

    // a restarted claimed kernel gets an ordinary container on the same home; its claim record goes
    const restarted = await client.callWithTimeout(
      60_000,
      methods.restart_kernel,
      ids[0]!,
      config({ cpu_slot: 1, mem_slot: 128 }, { GREETING: 'again' }),
    );
    expect(await run(client, ids[0]!, "print(open('/home/work/note.txt').read())")).to.equal('from the agent\n');
    expect(agent.warmPool!.claimed.has(infos[0]!.container_id)).to.equal(false);
    expect(await fs.readdir(path.join(agent.options.scratchRoot, '.pool-claims'))).to.deep.equal([`${infos[1]!.container_id}.json`]);
    expect(restarted.cpu_set).to.deep.equal(infos[0]!.cpu_set);
    for (const id of ids) await client.call(methods.destroy_kernel, id);
    expect(await pooledContainers(agentId)).to.have.length(2);
    expect(await fs.readdir(path.join(agent.options.scratchRoot, '.pool-claims'))).to.deep.equal([]);
    expect(agent.warmPool!.claimed.size).to.equal(0);
  });

  it('creates cold when nothing in the pool fits, and the kernel works', async () => {
    const { client, agent } = await startAgent({}, (ns) => putPool(ns, { [LANG]: { small: 1 } }));
    const [warm] = await settled(agent, 1);
    const id = uniqueName('k');
    const info = await client.callWithTimeout(60_000, methods.create_kernel, id, config({ cpu_slot: 1, mem_slot: 2048 }, { X: 'cold' }));
    expect(info.container_id).to.not.equal(warm);
    expect(agent.warmPool!.idle.has(warm!)).to.equal(true);
    expect((await docker.getContainer(info.container_id).inspect()).HostConfig.Memory).to.equal(2048 * 1024 * 1024);
    expect(await run(client, id, "import os; print(os.environ['X'])")).to.equal('cold\n');
    expect(agent.warmPool!.coldTotals.get(LANG)).to.equal(1);
  });

  it('rolls back a claim whose runner does not answer and creates the kernel cold', async () => {
    const { client, agent } = await startAgent({}, (ns) => putPool(ns, { [LANG]: { small: 1 } }, { readiness_interval: '0' }));
    const [hung] = await settled(agent, 1);
    const slot = agent.warmPool!.idle.get(hung!)!.slot;
    // as the runner's own user: kernels keep no CAP_KILL, so root in the container may not signal it
    execFileSync('docker', ['exec', '-u', '1000', hung!, 'pkill', '-STOP', '-f', 'runner.py']);
    const id = uniqueName('k');
    const info = await client.callWithTimeout(60_000, methods.create_kernel, id, config({ cpu_slot: 1, mem_slot: 128 }, { X: 'after' }));
    expect(info.container_id).to.not.equal(hung);
    expect(await run(client, id, "import os; print(os.environ['X'])")).to.equal('after\n');
    expect(
      await docker
        .getContainer(hung!)
        .inspect()
        .then(
          () => 'exists',
          () => 'gone',
        ),
    ).to.equal('gone');
    expect(await fs.readdir(path.join(agent.options.scratchRoot, '.pool-claims'))).to.deep.equal([]);
    expect(
      await fs.stat(path.join(agent.options.scratchRoot, '.pool', slot)).then(
        () => 'exists',
        () => 'gone',
      ),
    ).to.equal('gone');
    expect(await coresHeld(client)).to.equal(1);
    expect(agent.warmPool!.claimed.size).to.equal(0);
    expect((await client.call(methods.list_kernels)).map((k) => k.container_id)).to.deep.equal([info.container_id]);
  });

  it('grows and shrinks with the counts in etcd, without a restart, and keeps the last good settings on a bad value', async () => {
    const log = capturedLog();
    const { agent, agentId, etcd } = await startAgent({}, (ns) => putPool(ns, { [LANG]: { small: 1 } }), log.logger);
    await settled(agent, 1);
    await etcd.put('config/agent/pool/images').value(JSON.stringify({ [LANG]: { small: 2, large: 1 } }));
    await settled(agent, 3);
    expect(await pooledContainers(agentId)).to.have.length(3);
    expect([...agent.warmPool!.idle.values()].map((c) => c.type).sort()).to.deep.equal(['large', 'small', 'small']);

    await etcd.put('config/agent/pool/images').value(JSON.stringify({ [LANG]: { nope: 1 } })); // a type that does not exist
    await etcd.put('config/agent/pool/max').value('many');
    await log.waitFor(/^(?=.*rejected a pool setting from etcd)(?=.*pool\/images")/);
    await log.waitFor(/^(?=.*rejected a pool setting from etcd)(?=.*pool\/max")/);
    await agent.warmPool!.afterPasses(2); // sizing has run with what stayed in force
    expect(agent.warmPool!.deps.settings().images).to.deep.equal({ [LANG]: { small: 2, large: 1 } });
    expect(agent.warmPool!.deps.settings().max).to.equal(8);
    expect(agent.warmPool!.idle.size).to.equal(3);

    await etcd.put('config/agent/pool/images').value(JSON.stringify({ [LANG]: { small: 1 } }));
    await settled(agent, 1);
    await eventually('docker to hold one pooled container', async () => (await pooledContainers(agentId)).length === 1, 30_000);
  });

  it('replaces the pooled containers of an image rebuilt under the same tag', async () => {
    const prefix = `${uniqueName('pooltest')}/kernel-`;
    const tag = prefix + LANG;
    execFileSync('docker', ['tag', TEST_IMAGE_PREFIX + LANG, tag]);
    onCleanup(() => void execFileSync('docker', ['rmi', '-f', tag], { stdio: 'ignore' }));
    const { agent } = await startAgent({}, async (ns) => {
      await ns.put('config/agent/image_prefix').value(prefix);
      await putPool(ns, { [LANG]: { small: 1 } });
    });
    const [before] = await settled(agent, 1);
    const oldImage = agent.warmPool!.idle.get(before!)!.imageId;
    execFileSync('docker', ['build', '-q', '-t', tag, '-'], {
      stdio: ['pipe', 'ignore', 'ignore'],
      input: `FROM ${tag}\nLABEL io.compute-agent.test-rebuild="${uniqueName('r')}"\n`,
    });
    const newImage = (await docker.getImage(tag).inspect()).Id;
    expect(newImage).to.not.equal(oldImage);
    await eventually(
      'the pooled container to be replaced',
      () => {
        const idle = [...agent.warmPool!.idle.values()];
        return idle.length === 1 && idle[0]!.containerId !== before && idle[0]!.imageId === newImage;
      },
      90_000,
      100,
    );
    expect(
      await docker
        .getContainer(before!)
        .inspect()
        .then(
          () => 'exists',
          () => 'gone',
        ),
    ).to.equal('gone');
  });

  it('never hands out a pooled container made with other lock-down settings, and replaces it at the next check', async () => {
    // Hygiene only when the test calls it: a create must not get the stale container in the meantime.
    const { agent, client, etcd } = await startAgent({}, (ns) => putPool(ns, { [LANG]: { small: 1 } }, { check_interval: '3600' }));
    const [before] = await settled(agent, 1);
    const pool = agent.warmPool!;
    expect((await docker.getContainer(before!).inspect()).HostConfig.PidsLimit).to.equal(1024);
    await etcd.put('config/agent/kernel_pids_limit').value('512');
    await eventually('the new limit to be in force', () => pool.deps.kernelSettings().security.pidsLimit === 512);
    const info: KernelInfo = await client.callWithTimeout(
      30_000,
      methods.create_kernel,
      uniqueName('k'),
      config({ cpu_slot: 1, mem_slot: 128 }),
    );
    expect(info.container_id).to.not.equal(before);
    expect((await docker.getContainer(info.container_id).inspect()).HostConfig.PidsLimit).to.equal(512);
    expect([...pool.idle.keys()]).to.deep.equal([before]); // cold: the stale one was not taken
    await pool.tick();
    await eventually(
      'the pooled container to be replaced',
      () => {
        const idle = [...pool.idle.keys()];
        return idle.length === 1 && idle[0] !== before && pool.creating.size === 0;
      },
      90_000,
      100,
    );
    const [after] = [...pool.idle.keys()];
    expect((await docker.getContainer(after!).inspect()).HostConfig.PidsLimit).to.equal(512);
    expect(
      await docker
        .getContainer(before!)
        .inspect()
        .then(
          () => 'exists',
          () => 'gone',
        ),
    ).to.equal('gone');
  });

  it('replaces an idle container that died and one whose runner stopped answering its readiness check', async () => {
    const { agent } = await startAgent({}, (ns) => putPool(ns, { [LANG]: { small: 2 } }, { readiness_interval: '1' }));
    const [dead, hung] = await settled(agent, 2);
    await docker.getContainer(dead!).kill();
    execFileSync('docker', ['exec', '-u', '1000', hung!, 'pkill', '-STOP', '-f', 'runner.py']);
    await eventually(
      'both to be replaced',
      () => {
        const idle = [...agent.warmPool!.idle.keys()];
        return idle.length === 2 && !idle.includes(dead!) && !idle.includes(hung!) && agent.warmPool!.creating.size === 0;
      },
      90_000,
      100,
    );
    for (const id of [dead!, hung!])
      expect(
        await docker
          .getContainer(id)
          .inspect()
          .then(
            () => 'exists',
            () => 'gone',
          ),
      ).to.equal('gone');
  });

  it('with autoscale, grows with demand from a floor of 0 and shrinks back after the window and max idle', async () => {
    const { client, agent } = await startAgent({}, (ns) =>
      putPool(ns, { [LANG]: { small: 0 } }, { autoscale: 'true', autoscale_window: '4', max: '1', max_idle: '1' }),
    );
    const id = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, id, config({ cpu_slot: 1, mem_slot: 128 })); // cold: demand 1
    expect(agent.warmPool!.coldTotals.get(LANG)).to.equal(1);
    const [warm] = await settled(agent, 1);
    const second = await client.callWithTimeout(30_000, methods.create_kernel, uniqueName('k'), config({ cpu_slot: 1, mem_slot: 128 }));
    expect(second.container_id).to.equal(warm); // claimed: demand 2, bounded by max 1
    await settled(agent, 1);
    await eventually(
      'the pool to shrink back to its floor',
      () => agent.warmPool!.idle.size === 0 && agent.warmPool!.creating.size === 0,
      30_000,
      100,
    );
  });

  it('removes an untracked pooled container older than the zombie allowance, and not a younger one', async () => {
    const { agent, agentId } = await startAgent({}, (ns) => putPool(ns, {}, { zombie_allowance: '60' }));
    const stranger = uniqueName('i-other');
    removeContainersOf(stranger);
    const make = async (ageMs: number, owner = agentId) => {
      const c = await docker.createContainer({
        Image: TEST_IMAGE_PREFIX + LANG,
        Labels: {
          'io.compute-agent.agent': owner,
          'io.compute-agent.pool': `${LANG}/small`,
          'io.compute-agent.pool-slot': 'feedbeef',
          'io.compute-agent.created': String(Date.now() - ageMs),
        },
      });
      return c.id;
    };
    const old = await make(120_000);
    const young = await make(1_000);
    const othersOld = await make(120_000, stranger); // another agent's: never ours to remove
    await eventually(
      'the old zombie to be removed',
      async () =>
        await docker
          .getContainer(old)
          .inspect()
          .then(
            () => false,
            () => true,
          ),
      30_000,
      200,
    );
    await agent.warmPool!.afterPasses(3); // three more checks
    expect(
      await docker
        .getContainer(young)
        .inspect()
        .then(
          () => 'exists',
          () => 'gone',
        ),
    ).to.equal('exists');
    expect(
      await docker
        .getContainer(othersOld)
        .inspect()
        .then(
          () => 'exists',
          () => 'gone',
        ),
    ).to.equal('exists');
    expect(agent.warmPool!.idle.size).to.equal(0);
  });

  it('after SIGKILL, re-adopts the claimed kernels and the idle pool, counting no container twice', async () => {
    const namespace = uniqueName('test');
    const agentId = uniqueName('i-test');
    removeContainersOf(agentId);
    const { ns } = testEtcd(namespace);
    await putPool(ns, { [LANG]: { small: 2 } });
    const scratch = await tempScratch();
    const metricsFile = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'agent-metrics-')), 'agent.prom');
    onCleanup(() => fs.rm(path.dirname(metricsFile), { recursive: true, force: true }));
    const port = await freePort();
    const args = [...(await loopbackAgentFlags({ namespace, agentId, port, scratchRoot: scratch })), '--metrics', metricsFile];
    const metricsSay = async (state: string, n: number) => {
      const text = await fs.readFile(metricsFile, 'utf8').catch(() => '');
      return text !== '' && sample(parsePrometheus(text), 'compute_agent_pool_containers', { image: LANG, type: 'small', state }) === n;
    };
    const first = spawnAgent(args);
    await first.waitFor(/"message":"agent running"/, 30_000);
    const client = new AgentClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 30_000 });
    onCleanup(() => client.close());
    await eventually('a full pool', () => metricsSay('idle', 2), 90_000, 200);
    const ids = [uniqueName('k'), uniqueName('k')];
    const infos = await Promise.all(
      ids.map((id) => client.call(methods.create_kernel, id, config({ cpu_slot: 1, mem_slot: 128 }, { WHO: id }))),
    );
    await eventually(
      'a refilled pool',
      async () => (await metricsSay('idle', 2)) && (await metricsSay('creating', 0)) && (await metricsSay('claimed', 2)),
      90_000,
      200,
    );
    const beforeKill = (await pooledContainers(agentId)).map((c) => c.Id).sort();
    expect(beforeKill).to.have.length(4);
    first.child.kill('SIGKILL');
    await first.exited;
    await fs.rm(metricsFile, { force: true });

    const second = spawnAgent(args);
    await second.waitFor(/"message":"agent running"/, 30_000);
    expect(second.stderr()).to.match(/"running":2/);
    await eventually(
      'the restarted agent to see its pool whole',
      async () => (await metricsSay('idle', 2)) && (await metricsSay('claimed', 2)),
      30_000,
      200,
    );
    // A few sizing passes of the restarted agent (its pass counter in the metrics): nothing more may be created.
    const passes = async () => sample(parsePrometheus(await fs.readFile(metricsFile, 'utf8')), 'compute_agent_pool_passes_total', {}) ?? 0;
    const p0 = await passes();
    await eventually('three more pool passes', async () => (await passes()) >= p0 + 3, 60_000, 200);
    expect(await metricsSay('creating', 0)).to.equal(true);
    expect((await pooledContainers(agentId)).map((c) => c.Id).sort()).to.deep.equal(beforeKill);
    const again = await Promise.all(ids.map((id) => client.call(methods.create_kernel, id, config({ cpu_slot: 1, mem_slot: 128 }))));
    expect(again).to.deep.equal(infos);
    expect(await run(client, ids[0]!, "import os; print(os.environ['WHO'])")).to.equal(`${ids[0]}\n`);
    // both cores are held by the re-adopted kernels: a third kernel has no room
    const full = await client.call(methods.create_kernel, uniqueName('k'), config({ cpu_slot: 1, mem_slot: 128 })).then(
      () => 'created',
      (e: Error) => e.message,
    );
    expect(full).to.match(/not enough CPU cores/);
    for (const id of ids) await client.call(methods.destroy_kernel, id);
    expect(await fs.readdir(path.join(scratch, '.pool-claims'))).to.deep.equal([]);
    // a bad value while running: one log line naming the key and the problem
    await ns.put('config/agent/pool/max').value('many');
    await second.waitFor(
      /^(?=.*"message":"rejected a pool setting from etcd)(?=.*config\/agent\/pool\/max")(?=.*is not a number).*$/m,
      10_000,
    );
  });

  it('writes a metrics file that parses as Prometheus text and matches the pool, and serves the same over HTTP', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-metrics-'));
    onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
    const metricsPort = await freePort();
    const { client, agent } = await startAgent({ metrics: path.join(dir, 'sub', 'agent.prom'), metricsPort }, (ns) =>
      putPool(ns, { [LANG]: { small: 2 } }),
    );
    await settled(agent, 2);
    await client.callWithTimeout(30_000, methods.create_kernel, uniqueName('k'), config({ cpu_slot: 1, mem_slot: 128 }));
    await client.callWithTimeout(60_000, methods.create_kernel, uniqueName('k'), config({ cpu_slot: 1, mem_slot: 2048 }));
    await settled(agent, 2);
    await agent.agentMetrics!.writeFile();
    const text = await fs.readFile(path.join(dir, 'sub', 'agent.prom'), 'utf8');
    for (const m of [parsePrometheus(text), parsePrometheus(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text())]) {
      const small = { image: LANG, type: 'small' };
      expect(sample(m, 'compute_agent_pool_containers', { ...small, state: 'idle' })).to.equal(2);
      expect(sample(m, 'compute_agent_pool_containers', { ...small, state: 'creating' })).to.equal(0);
      expect(sample(m, 'compute_agent_pool_containers', { ...small, state: 'claimed' })).to.equal(1);
      expect(sample(m, 'compute_agent_pool_claims_total', small)).to.equal(1);
      expect(sample(m, 'compute_agent_pool_cold_fallbacks_total', { image: LANG })).to.equal(1);
      expect(sample(m, 'compute_agent_pool_creation_seconds_count', {})).to.equal(3);
      expect(sample(m, 'compute_agent_kernels', { state: 'running' })).to.equal(2);
      expect(m.types.get('compute_agent_pool_creation_seconds')).to.equal('histogram');
      expect(m.types.get('compute_agent_pool_claims_total')).to.equal('counter');
    }
    expect((await fetch(`http://127.0.0.1:${metricsPort}/other`)).status).to.equal(404);
  });
});
