/**
 * GPUs on this machine, which has none: the CPU fallback for real (real
 * agent, Docker and etcd) — heartbeat gpu_slots 0, a gpu_slot 1 kernel
 * refused with agent.InsufficientResources saying why and nothing taken,
 * gpu_slot 0 kernels as before, `agent check` saying which path applies; and
 * a hung or failing nvidia-smi on PATH leaves the agent serving with
 * gpu_slots 0 and one log line.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import {
  loopbackAgentFlags,
  AGENT_BIN,
  REPO_ROOT,
  containersOf,
  ETCD_ADDR,
  freePort,
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
  coresHeld,
} from '../helpers/env.js';
import { sink } from '../helpers/sink.js';
import type { Logger } from '../../src/log.js';
import { poolSettled, putPool } from '../helpers/pool.js';
import { homesIn } from '../helpers/leftovers.js';

const docker = new Docker();
const config = (gpu: number) => ({ lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 256, gpu_slot: gpu }, mounts: [], environ: {} });

describe('GPUs on a node without one', function () {
  this.timeout(60_000);
  before(async function () {
    await requireEtcd();
    if (existsSync('/proc/driver/nvidia')) this.skip(); // these tests are about a node without the driver
  });

  it('reports gpu_slots 0, refuses gpu_slot 1 saying why with nothing taken, and runs gpu_slot 0 kernels as before', async () => {
    const s = await sink();
    const { client, agent, agentId } = await startAgent({}, async (ns) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
    });
    const beat = await s.next('instance_heartbeat');
    expect((beat.args[0] as Record<string, unknown>).gpu_slots).to.equal(0);

    const refused = await remoteError(client.call(methods.create_kernel, uniqueName('k'), config(1)));
    expect(refused.remoteType).to.equal('agent.InsufficientResources');
    expect(String(refused.remoteArgs[0])).to.match(
      /^this node has no usable GPU \(no NVIDIA driver \(\/proc\/driver\/nvidia is missing; nvidia-smi not found\)\); fix: install the NVIDIA driver/,
    );
    const fractional = await remoteError(client.call(methods.create_kernel, uniqueName('k'), config(0.25)));
    expect(fractional.remoteType).to.equal('agent.InsufficientResources');
    expect(await containersOf(agentId)).to.have.length(0);
    expect(homesIn(agent.options.scratchRoot)).to.deep.equal([]);
    expect(await coresHeld(client)).to.equal(0);
    expect(agent.gpuService!.books.holders().size).to.equal(0);

    const id = uniqueName('k');
    const info = await client.call(methods.create_kernel, id, config(0));
    expect(info.gpu_set).to.deep.equal([]);
    const c = await docker.getContainer(info.container_id).inspect();
    expect(c.HostConfig.Devices ?? []).to.deep.equal([]);
    expect(c.HostConfig.DeviceRequests ?? []).to.deep.equal([]);
    expect(c.Config.Env.join(' ')).not.to.match(/CUDA_VISIBLE_DEVICES|NVIDIA_/);
    expect(c.Config.Labels['io.compute-agent.gpu-set']).to.equal('');
    const stats = await client.call(methods.get_node_stats);
    expect(stats).to.include({ gpu_path: 'none' });
    expect(stats.gpus).to.deep.equal([]);
    await client.call(methods.destroy_kernel, id);
    expect(await coresHeld(client)).to.equal(0);
  });

  it('fills the CPU pool types and never tries a GPU type (a cluster-wide one costs this node nothing)', async () => {
    const types = [
      { name: 'small', cpu: 1, memory: 256 },
      { name: 'g1', cpu: 1, memory: 256, gpu: 1 },
    ];
    const warnings: string[] = [];
    const log: Logger = {
      error: () => undefined,
      warn: (m) => warnings.push(m),
      info: () => undefined,
      debug: () => undefined,
      child: () => log,
    };
    const { agent } = await startAgent({}, (ns) => putPool(ns, { [TEST_IMAGE_LANG]: { small: 1, g1: 1 } }, {}, types), log);
    await poolSettled(agent, 1);
    await agent.warmPool!.tick();
    expect(warnings.filter((w) => /pooled container/.test(w))).to.deep.equal([]); // no attempt, so no failure
    expect(agent.warmPool!.creating.size).to.equal(0);
    expect([...agent.warmPool!.idle.values()].map((c) => c.type)).to.deep.equal(['small']);
    const gpuRow = agent.warmPool!.sizes().find((r) => r.type === 'g1');
    expect(gpuRow).to.include({ idle: 0, creating: 0 });
  });

  it('agent check says the CPU fallback applies and why', async function () {
    this.timeout(30_000);
    const args = [
      'check',
      '--namespace',
      uniqueName('test'),
      '--agent-id',
      uniqueName('i-test'),
      '--agent-port',
      String(await freePort()),
      '--bind-host',
      '127.0.0.1',
      '--scratch-root',
      await tempScratch(),
    ];
    const child = spawn(process.execPath, [AGENT_BIN, ...args], { env: { ...process.env, BACKEND_ETCD_ADDR: ETCD_ADDR } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise((resolve) => child.on('close', resolve));
    const line = out.split('\n').find((l) => l.slice(7).startsWith('GPUs'));
    expect(line, out).to.match(
      /^\[ ok \] GPUs\s+none: CPU fallback, gpu_slots 0 \(no NVIDIA driver .*\); to use GPUs: install the NVIDIA driver and nvidia-container-toolkit/,
    );
    expect(code, out).to.equal(0);
  });

  it('agent gpus and deploy/dev/gpu-check.sh say there is no usable GPU, and why, with exit codes 1 and 2', async function () {
    this.timeout(30_000);
    const gpus = spawnSync(process.execPath, [AGENT_BIN, 'gpus'], { encoding: 'utf8' });
    expect(gpus.status, gpus.stdout + gpus.stderr).to.equal(1);
    expect(gpus.stdout).to.match(
      /^devices: 0 usable\npath: none \(no NVIDIA driver \(\/proc\/driver\/nvidia is missing; nvidia-smi not found\)\)\nfix: install the NVIDIA driver/,
    );
    const json = JSON.parse(spawnSync(process.execPath, [AGENT_BIN, 'gpus', '--json'], { encoding: 'utf8' }).stdout) as {
      state: { path: string };
      oneDevice: unknown;
    };
    expect(json).to.deep.include({ oneDevice: null });
    expect(json.state.path).to.equal('none');
    const check = spawnSync('bash', [path.join(REPO_ROOT, 'deploy/dev/gpu-check.sh')], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).to.equal(2);
    expect(check.stdout).to.match(/^path: none /m);
    expect(check.stderr).to.match(/gpu-check: no usable NVIDIA GPU on this machine: the agent runs the CPU fallback here/);
  });

  for (const [what, body, said] of [
    ['hung', 'sleep 600', /nvidia-smi did not answer within 5 s and was killed/],
    [
      'failing',
      'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." >&2; exit 9',
      /nvidia-smi exited with code 9: NVIDIA-SMI has failed/,
    ],
  ] as const) {
    it(`keeps serving with gpu_slots 0 and one log line when nvidia-smi on PATH is ${what}`, async () => {
      const bin = await fs.mkdtemp(path.join(os.tmpdir(), 'fake-smi-'));
      onCleanup(() => fs.rm(bin, { recursive: true, force: true }));
      await fs.writeFile(path.join(bin, 'nvidia-smi'), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
      const namespace = uniqueName('test');
      const agentId = uniqueName('i-test');
      const { ns } = testEtcd(namespace);
      const s = await sink();
      await ns.put('nodes/manager/event_addr').value(s.addr);
      removeContainersOf(agentId);
      const port = await freePort();
      const agent = spawnAgent(await loopbackAgentFlags({ namespace, agentId, port }), { PATH: `${bin}:${process.env.PATH ?? ''}` });
      await agent.waitFor(/"message":"agent running"/, 30_000);
      const beat = await s.next('instance_heartbeat', 0, 10_000);
      expect((beat.args[0] as Record<string, unknown>).gpu_slots).to.equal(0);
      const client = new AgentClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 10_000 });
      onCleanup(() => client.close());
      expect((await client.call(methods.get_node_stats)).gpu_path).to.equal('none');
      const lines = agent
        .stderr()
        .split('\n')
        .filter((l) => /GPU|nvidia/i.test(l));
      const refused = await remoteError(client.call(methods.create_kernel, uniqueName('k'), config(1)));
      expect(refused.remoteType).to.equal('agent.InsufficientResources');
      expect(String(refused.remoteArgs[0])).to.match(said);
      expect(lines, agent.stderr()).to.have.length(1);
      expect(lines[0]).to.match(/"level":"warn".*"message":"no usable GPU: kernels asking for gpu_slot > 0 are refused, gpu_slots is 0"/);
      expect(lines[0]).to.match(said);
    });
  }
});
