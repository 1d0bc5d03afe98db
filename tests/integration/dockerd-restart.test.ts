/**
 * Fault drill: dockerd restarts while kernels run. With `--live-restore`
 * (which deploy/dev/up.sh sets and the README asks operators to set), the
 * containers keep running; the agent must reconnect its Docker events stream
 * (a kernel killed afterwards is still noticed), and the kernels must still
 * execute through their relays once dockerd publishes their ports again.
 *
 * The drill restarts only a dockerd that the project's own script started
 * (its pid file in /run/compute-agent-dev/); on a machine whose dockerd is
 * someone else's it is skipped, since restarting it is not ours to do.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import Docker from 'dockerode';
import { methods } from '../../src/rpc/methods.js';
import type { AgentClient } from '../../src/rpc/client.js';
import { eventually, onCleanup, REPO_ROOT, requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { sink } from '../helpers/sink.js';

const run = promisify(execFile);
const docker = new Docker();
const PID_FILE = '/run/compute-agent-dev/dockerd.pid';

async function ourDockerdPid(): Promise<number | null> {
  const pid = Number(await fs.readFile(PID_FILE, 'utf8').catch(() => ''));
  if (!pid) return null;
  const comm = await fs.readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
  return comm.trim() === 'dockerd' ? pid : null;
}

async function dockerAnswers(): Promise<boolean> {
  return docker.ping().then(() => true, () => false);
}

/** Starts dockerd again through the project's script (which waits until it answers). */
async function bringDockerdBack(): Promise<void> {
  if (await dockerAnswers()) return;
  await run('bash', [path.join(REPO_ROOT, 'deploy/dev/up.sh')], { env: { ...process.env, SKIP_INSTALL: '1' }, timeout: 120_000 });
}

async function stdoutOf(client: AgentClient, id: string, code: string): Promise<string> {
  return consoleText(await runToEnd(client, id, code), 'stdout');
}

describe('fault drill: dockerd restart', function () {
  this.timeout(180_000);
  before(requireEtcd);

  it('keeps kernels running and executing, and reconnects the events stream', async function () {
    const pid = await ourDockerdPid();
    const info = await docker.info();
    if (!pid || !info.LiveRestoreEnabled) this.skip(); // not our dockerd, or not one that keeps containers across a restart

    const s = await sink();
    const { client } = await startAgent({}, async (ns) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
    });
    const config = { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 256, gpu_slot: 0 }, mounts: [], environ: {} };
    const [a, b] = [uniqueName('k'), uniqueName('k')];
    const ka = await client.callWithTimeout(60_000, methods.create_kernel, a, config);
    const kb = await client.callWithTimeout(60_000, methods.create_kernel, b, config);
    expect(await stdoutOf(client, a, 'x = 41\nprint(x)')).to.equal('41\n');
    const startedAt = (await docker.getContainer(ka.container_id).inspect()).State.StartedAt;

    onCleanup(bringDockerdBack); // whatever happens below, dockerd is up again for the tests after this one
    process.kill(pid, 'SIGTERM');
    await eventually('dockerd to exit', async () => !(await fs.stat(`/proc/${pid}`).then(() => true, () => false)), 60_000, 200);
    await bringDockerdBack();

    // The same containers, never restarted; the kernels keep their state.
    const after = await docker.getContainer(ka.container_id).inspect();
    expect(after.State.Running).to.equal(true);
    expect(after.State.StartedAt).to.equal(startedAt);
    expect(await eventually('kernel a to execute again', () => stdoutOf(client, a, 'print(x + 1)'), 60_000, 500)).to.equal('42\n');

    // The agent's events stream came back: a kernel killed now is noticed and cleaned up.
    const since = Date.now();
    await docker.getContainer(kb.container_id).kill();
    const ev = await s.next('kernel_terminated', since, 30_000);
    expect(ev.args.slice(0, 2)).to.deep.equal([b, 'self-terminated']);
    await eventually('the dead container to be removed', async () => (await docker.listContainers({ all: true, filters: { id: [kb.container_id] } })).length === 0, 30_000);

    // And Docker calls work again: a new kernel can be created.
    const c = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, c, config);
    expect(await stdoutOf(client, c, 'print(6*7)')).to.equal('42\n');
  });
});
