/**
 * The deployment files tried for real: the shipped supervisord program
 * section and run script run the real agent under Debian's supervisord (an
 * instance of the test's own: own config, socket and log files); the agent
 * registers, answers the run script's health probe (/livez, /readyz), serves a kernel, and `supervisorctl stop` makes it deregister
 * cleanly while the kernel keeps running. The systemd unit cannot run here
 * (no systemd as PID 1); `systemd-analyze verify` checks it when installed.
 */
import { execFile, spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import Docker from 'dockerode';
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import {
  ETCD_ADDR,
  eventually,
  freePort,
  onCleanup,
  removeContainersOf,
  REPO_ROOT,
  requireEtcd,
  testEtcd,
  TEST_IMAGE_LANG,
  uniqueName,
} from '../helpers/env.js';

const run = promisify(execFile);

/** The shipped file with its install paths replaced; fails if a path to replace is not there any more. */
async function templated(file: string, replace: Record<string, string>): Promise<string> {
  let text = await fs.readFile(path.join(REPO_ROOT, file), 'utf8');
  for (const [from, to] of Object.entries(replace)) {
    expect(text, `${file} no longer mentions ${from}`).to.include(from);
    text = text.split(from).join(to);
  }
  return text;
}

/** A supervisord of the test's own, started with `supervisord -c`, shut down after the test. */
async function ownSupervisord(dir: string, programConf: string) {
  const conf = path.join(dir, 'supervisord.conf');
  await fs.writeFile(path.join(dir, 'program.conf'), programConf);
  await fs.writeFile(
    conf,
    [
      '[unix_http_server]',
      `file = ${dir}/supervisor.sock`,
      'chmod = 0700',
      '',
      '[supervisord]',
      `logfile = ${dir}/supervisord.log`,
      `pidfile = ${dir}/supervisord.pid`,
      `childlogdir = ${dir}`,
      'loglevel = info',
      '',
      '[rpcinterface:supervisor]',
      'supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface',
      '',
      '[supervisorctl]',
      `serverurl = unix://${dir}/supervisor.sock`,
      '',
      '[include]',
      `files = ${dir}/program.conf`,
      '',
    ].join('\n'),
  );
  const ctl = async (...args: string[]) => {
    // supervisorctl exits non-zero for a program that is not RUNNING; the output says what it is.
    const r = await run('supervisorctl', ['-c', conf, ...args]).catch((err: { stdout?: string; stderr?: string }) => err);
    return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  };
  onCleanup(async () => {
    const pid = Number(await fs.readFile(path.join(dir, 'supervisord.pid'), 'utf8').catch(() => 'NaN'));
    await ctl('shutdown');
    const alive = () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    if (Number.isInteger(pid)) {
      await eventually('supervisord to exit', () => !alive(), 30_000).catch(() => process.kill(pid, 'SIGKILL'));
    }
  });
  await run('supervisord', ['-c', conf]); // returns once it has daemonized
  return { ctl, log: () => fs.readFile(path.join(dir, 'supervisord.log'), 'utf8') };
}

describe('deployment', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('runs the agent under supervisord from the shipped files; supervisorctl stop deregisters it and leaves its kernel running', async function () {
    if (spawnSync('supervisord', ['--version']).status !== 0)
      throw new Error('supervisord is not installed: apt-get install supervisor (deploy/dev/up.sh does it)');
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-supervisord-'));
    onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
    const namespace = uniqueName('test');
    const agentId = uniqueName('i-test');
    const port = await freePort();
    const metricsPort = await freePort();
    removeContainersOf(agentId);
    const { ns } = testEtcd(namespace);
    await ns.put(`nodes/agents/${agentId}/config/heartbeat_interval`).value('1');

    // The settings as an operator writes them; the scratch root does not exist yet (the run script makes it).
    await fs.writeFile(
      path.join(dir, 'agent.env'),
      [
        `BACKEND_ETCD_ADDR=${ETCD_ADDR}`,
        `BACKEND_NAMESPACE=${namespace}`,
        `BACKEND_AGENT_ID=${agentId}`,
        `BACKEND_AGENT_PORT=${port}`,
        `BACKEND_METRICS_PORT=${metricsPort}`,
        'BACKEND_BIND_HOST=127.0.0.1',
        'BACKEND_AGENT_HOST_OVERRIDE=127.0.0.1',
        `BACKEND_SCRATCH_ROOT="${dir}/scratch"`,
        '',
      ].join('\n'),
    );
    await fs.mkdir(path.join(dir, 'log'));
    const program = await templated('supervisord/compute-agent.conf', {
      '/opt/compute-agent': REPO_ROOT,
      '/etc/compute-agent/agent.env': `${dir}/agent.env`,
      '/var/log/compute-agent': `${dir}/log`,
    });
    const sv = await ownSupervisord(dir, program);

    await eventually(
      'the agent to register as running',
      async () => (await ns.get(`nodes/agents/${agentId}`).string()) === 'running',
      60_000,
      200,
    );
    // RUNNING once it has stayed up for startsecs (5 s).
    await eventually(
      'supervisord to see the agent RUNNING',
      async () => /^compute-agent\s+RUNNING\s+pid \d+/.test(await sv.ctl('status', 'compute-agent')),
      30_000,
      500,
    );
    const beat = JSON.parse(
      (await eventually('a heartbeat in etcd', () => ns.get(`nodes/agents/${agentId}/heartbeat`).string(), 20_000))!,
    ) as Record<string, unknown>;
    expect(beat).to.include({ addr: `tcp://127.0.0.1:${port}`, kernels: 0 });
    // The run script's health probe, as a monitor (or the systemd unit's ExecStartPost) runs it, with the same env file.
    const probe = (route: string) =>
      spawnSync(path.join(REPO_ROOT, 'supervisord/run-agent.sh'), ['probe', route], {
        encoding: 'utf8',
        env: { ...process.env, COMPUTE_AGENT_ENV: path.join(dir, 'agent.env') },
      });
    for (const route of ['livez', 'readyz']) {
      const r = probe(route);
      expect(r.status, `${route}: ${r.stdout}${r.stderr}`).to.equal(0);
      expect(JSON.parse(r.stdout)).to.include({ status: 'ok' });
    }

    const client = new AgentClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 60_000 });
    onCleanup(() => client.close());
    const kernelId = uniqueName('k');
    const info = await client.call(methods.create_kernel, kernelId, {
      lang: TEST_IMAGE_LANG,
      limits: { cpu_slot: 1, mem_slot: 256, gpu_slot: 0 },
      mounts: [],
      environ: {},
    });

    expect(await sv.ctl('stop', 'compute-agent')).to.equal('compute-agent: stopped');
    expect(await sv.ctl('status', 'compute-agent')).to.match(/^compute-agent\s+STOPPED/);
    // A clean stop: SIGTERM reached node (the run script execs it), which drained and exited 0.
    expect(await sv.log()).to.match(/stopped: compute-agent \(exit status 0\)/);
    const agentLog = await fs.readFile(path.join(dir, 'log/agent.log'), 'utf8');
    expect(agentLog).to.match(/"message":"stopping on signal; kernels keep running".*"signal":"SIGTERM"/);
    expect(agentLog).to.match(/"message":"agent stopped"/);

    // Deregistered: only the operator's config/ is left under the agent's key.
    const left = Object.keys(await ns.getAll().prefix(`nodes/agents/${agentId}`).strings());
    expect(left).to.deep.equal([`nodes/agents/${agentId}/config/heartbeat_interval`]);
    const container = await new Docker().getContainer(info.container_id).inspect();
    expect(container.State.Running, 'the kernel container keeps running').to.equal(true);
    await fs.access(path.join(dir, 'scratch', kernelId)); // and so does its home
  });

  it('ships a systemd unit that systemd-analyze verify accepts', async function () {
    if (spawnSync('systemd-analyze', ['--version']).status !== 0) this.skip(); // not installed: nothing to check the unit with
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-systemd-'));
    onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
    const unit = await templated('deploy/systemd/compute-agent.service', { '/opt/compute-agent': REPO_ROOT });
    expect(unit).to.match(/^KillMode=mixed$/m);
    expect(unit).to.match(/^Restart=on-failure$/m);
    expect(unit).to.match(/^EnvironmentFile=/m);
    await fs.writeFile(path.join(dir, 'compute-agent.service'), unit);
    const r = spawnSync('systemd-analyze', ['verify', path.join(dir, 'compute-agent.service')], { encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
  });
});
