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
 *
 * Every step has a deadline of its own, well inside the test's, so a failure
 * names the step that hung, how far into the drill it was, and ends with the
 * agent's log of the drill and the tail of dockerd's.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import Docker from 'dockerode';
import { createLogger } from '../../src/log.js';
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
  return docker.ping().then(
    () => true,
    () => false,
  );
}

/** Starts dockerd again through the project's script (which waits until it answers). */
async function bringDockerdBack(): Promise<void> {
  if (await dockerAnswers()) return;
  await run('bash', [path.join(REPO_ROOT, 'deploy/dev/up.sh')], { env: { ...process.env, SKIP_INSTALL: '1' }, timeout: 120_000 });
}

async function stdoutOf(client: AgentClient, id: string, code: string): Promise<string> {
  return consoleText(await runToEnd(client, id, code), 'stdout');
}

/** The agent's log of this drill, kept in memory for the failure message. */
function memoryLog() {
  const stream = new PassThrough();
  const lines: string[] = [];
  stream.on('data', (b: Buffer) => lines.push(...b.toString('utf8').split('\n').filter(Boolean)));
  return { logger: createLogger({ level: 'debug', format: 'text', stream }), lines };
}

/** Runs the drill's steps, each with a deadline; a failure says which step, when, and what the logs said. */
function stepper(log: string[]) {
  const t0 = Date.now();
  const since = () => `${((Date.now() - t0) / 1000).toFixed(1)} s into the drill`;
  return async function step<T>(name: string, ms: number, fn: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`step "${name}" did not finish within ${ms / 1000} s`)), ms);
    });
    try {
      return await Promise.race([fn(), deadline]);
    } catch (err) {
      const dockerd = await fs.readFile('/var/log/compute-agent-dev/dockerd.log', 'utf8').catch(() => '');
      const tail = (lines: string[], n: number) => lines.slice(-n).join('\n');
      throw new Error(
        `${(err as Error).message} (${since()})\n--- agent log (last 60 lines)\n${tail(log, 60)}\n--- dockerd log (last 30 lines)\n${tail(dockerd.split('\n'), 30)}`,
        { cause: err },
      );
    } finally {
      clearTimeout(timer);
    }
  };
}

describe('fault drill: dockerd restart', function () {
  this.timeout(240_000);
  before(requireEtcd);

  it('keeps kernels running and executing, and reconnects the events stream', async function () {
    const pid = await ourDockerdPid();
    const info = await docker.info();
    if (!pid || !info.LiveRestoreEnabled) this.skip(); // not our dockerd, or not one that keeps containers across a restart

    const log = memoryLog();
    const step = stepper(log.lines);
    const s = await sink();
    const { client } = await startAgent(
      {},
      async (ns) => {
        await ns.put('nodes/manager/event_addr').value(s.addr);
      },
      log.logger,
    );
    const config = { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 256, gpu_slot: 0 }, mounts: [], environ: {} };
    const [a, b] = [uniqueName('k'), uniqueName('k')];
    const ka = await step('create kernel a', 60_000, () => client.callWithTimeout(60_000, methods.create_kernel, a, config));
    const kb = await step('create kernel b', 60_000, () => client.callWithTimeout(60_000, methods.create_kernel, b, config));
    expect(await step('run in kernel a', 30_000, () => stdoutOf(client, a, 'x = 41\nprint(x)'))).to.equal('41\n');
    const startedAt = (await docker.getContainer(ka.container_id).inspect()).State.StartedAt;

    onCleanup(bringDockerdBack); // whatever happens below, dockerd is up again for the tests after this one
    process.kill(pid, 'SIGTERM');
    await step('dockerd to exit', 30_000, () =>
      eventually(
        'dockerd to exit',
        async () =>
          !(await fs.stat(`/proc/${pid}`).then(
            () => true,
            () => false,
          )),
        30_000,
        200,
      ),
    );
    await step('dockerd to come back', 60_000, bringDockerdBack);

    // The same containers, never restarted; the kernels keep their state.
    const after = await docker.getContainer(ka.container_id).inspect();
    expect(after.State.Running).to.equal(true);
    expect(after.State.StartedAt).to.equal(startedAt);
    expect(await step('kernel a to execute again', 45_000, () => stdoutOf(client, a, 'print(x + 1)'))).to.equal('42\n');

    // The agent's events stream came back: a kernel killed now is noticed and cleaned up.
    const since = Date.now();
    await docker.getContainer(kb.container_id).kill();
    const ev = await step('kernel_terminated of the killed kernel b', 30_000, () => s.next('kernel_terminated', since, 30_000));
    expect(ev.args.slice(0, 2)).to.deep.equal([b, 'self-terminated']);
    await step('the dead container to be removed', 30_000, () =>
      eventually(
        'the dead container to be removed',
        async () => (await docker.listContainers({ all: true, filters: { id: [kb.container_id] } })).length === 0,
        30_000,
      ),
    );

    // And Docker calls work again: a new kernel can be created.
    const c = uniqueName('k');
    await step('create kernel c', 30_000, () => client.callWithTimeout(30_000, methods.create_kernel, c, config));
    expect(await step('run in kernel c', 20_000, () => stdoutOf(client, c, 'print(6*7)'))).to.equal('42\n');
  });
});
