/**
 * Images without this project's runner (issue 32; docs/images.rst, "Bring
 * your own image"): the images of deploy/kernels/build-any.sh, pulled by the
 * agent from the local registry, become kernels with the runner environment
 * the agent mounts (deploy/runner-env/build.sh): a Debian image with python3
 * and nothing else, a shell-only image, an image whose Python is a venv named
 * by its runtime-path label; a musl image is refused. The cases that run user
 * code in the image's own interpreter (query mode, input, interrupt,
 * completions) need the runner's side (CA_USER_PYTHON) and are skipped, saying
 * so, while this checkout's runner lacks it.
 */
import { expect } from 'chai';
import Docker from 'dockerode';
import { methods } from '../../src/rpc/methods.js';
import type { AgentClient } from '../../src/rpc/client.js';
import { containersOf, eventually, onCleanup, remoteError, requireEtcd, startAgent, uniqueName } from '../helpers/env.js';
import { requireRegistry } from '../helpers/registry.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { putPool, poolSettled } from '../helpers/pool.js';
import { ANY_IMAGES, batch, pushAnyImage, relabelled, requireRunnerEnv, runnerTakesUserInterpreter } from '../helpers/any-image.js';
import { RUNNER_ENV_MOUNT } from '../../src/containers/runner-env.js';

const docker = new Docker();
const limits = { cpu_slot: 1, mem_slot: 256 };

/** An agent that pulls from the image's test repository, and a kernel of it; destroyed after the test. */
async function anyKernel(local: string, pool = false, extra: Record<string, unknown> = {}) {
  const env = await requireRunnerEnv();
  const { prefix, lang } = await pushAnyImage(local);
  const t = await startAgent({}, async (ns) => {
    await ns.put('config/agent/image_prefix').value(prefix);
    if (pool) await putPool(ns, { [lang]: { small: 1 } });
  });
  if (pool) await poolSettled(t.agent, 1);
  const id = uniqueName('k');
  const info = await t.client.callWithTimeout(90_000, methods.create_kernel, id, {
    lang,
    limits,
    mounts: [],
    environ: { GREETING: 'hello' },
    ...extra,
  });
  onCleanup(() => t.client.call(methods.destroy_kernel, id).then(() => undefined));
  return { ...t, id, env, lang, info };
}

const logsOf = async (client: AgentClient, id: string) => (await client.call(methods.get_logs, id)).logs;

describe('images without a runner: the agent brings its runner environment', function () {
  this.timeout(120_000);
  before(requireEtcd);
  before(requireRegistry);

  it('a Debian image with python3 and nothing else, pulled from the registry: batch as the kernel user, files, restart', async () => {
    const { client, id, env, agentId, lang } = await anyKernel(ANY_IMAGES.python);
    expect(await logsOf(client, id)).to.contain("user code runs with the image's Python /usr/bin/python3");
    // The environment is mounted read-only, and only it beside the home.
    const [c] = await containersOf(agentId);
    const info = await docker.getContainer(c!.Id).inspect();
    expect(info.Mounts.map((m) => [m.Source, m.Destination, m.RW]).sort()).to.deep.include([env.dir, RUNNER_ENV_MOUNT, false]);
    expect(info.Config.Labels['io.compute-agent.runner-env']).to.equal(env.digest);
    const who = await batch(
      client,
      id,
      'echo "$(id -u) $GREETING"; test -O /home/work && echo owns-home',
      'python3 -c "import sys; print(sys.version_info[0])"',
    );
    const uid = Number(consoleText(who, 'stdout').split('\n')[1]!.split(' ')[0]);
    expect(uid).to.be.greaterThan(0);
    expect([consoleText(who, 'stdout'), who.at(-1)!.exitCode]).to.deep.equal([`3\n${uid} hello\nowns-home\n`, 0]);
    await client.call(methods.upload_file, id, 'data.txt', Buffer.from('uploaded'));
    expect(
      (JSON.parse((await client.call(methods.list_files, id, '.')).files) as Array<{ filename: string }>).map((f) => f.filename),
    ).to.include('data.txt');
    await client.callWithTimeout(90_000, methods.restart_kernel, id, { lang, limits, mounts: [], environ: { GREETING: 'hello' } });
    const after = await batch(client, id, 'cat data.txt');
    expect([consoleText(after, 'stdout'), after.at(-1)!.exitCode]).to.deep.equal(['uploaded', 0]);
  });

  it('a shell-only image without Python: a shell kernel, its bootstrap script, batch and the terminal in the image shell', async () => {
    const { client, id } = await anyKernel(ANY_IMAGES.shell, false, { bootstrap_script: 'echo "boot $(id -u)" > /home/work/booted\n' });
    const logs = await logsOf(client, id);
    expect(logs).to.contain('the image has no Python 3: a shell kernel (/bin/bash)');
    expect(logs).to.contain('bootstrap script done');
    const r = await batch(client, id, 'echo "$BASH_VERSION" | cut -c1; command -v python3 || echo no-python; cat booted; id -u');
    const [major, none, booted, uid] = consoleText(r, 'stdout').split('\n');
    expect([major, none, booted]).to.deep.equal(['5', 'no-python', `boot ${uid}`]); // the bootstrap script ran as the kernel user
    let cursor = (await client.call(methods.terminal_read, id, 0, 0)).cursor;
    await client.call(methods.terminal_write, id, Buffer.from('echo term-$((2+3))\n'));
    let text = '';
    await eventually(
      'the terminal to answer',
      async () => {
        const chunk = await client.call(methods.terminal_read, id, cursor, 1);
        text += chunk.data.toString('utf8');
        cursor = chunk.cursor;
        return text.includes('term-5');
      },
      20_000,
      10,
    );
  });

  it('an image whose Python is a venv under /opt named by ai.backend.runtime-path', async () => {
    const { client, id } = await anyKernel(ANY_IMAGES.venv);
    expect(await logsOf(client, id)).to.contain("user code runs with the image's Python /opt/venv/bin/python3");
    const r = await batch(client, id, 'command -v python3 || echo none-on-path');
    expect(consoleText(r, 'stdout')).to.equal('none-on-path\n');
  });

  it('a musl image is refused at create, saying so, with nothing left behind', async () => {
    await requireRunnerEnv();
    const { prefix, lang } = await pushAnyImage(ANY_IMAGES.musl);
    const { client, agentId } = await startAgent({}, (ns) =>
      ns
        .put('config/agent/image_prefix')
        .value(prefix)
        .then(() => undefined),
    );
    const err = await remoteError(
      client.callWithTimeout(90_000, methods.create_kernel, uniqueName('k'), { lang, limits, mounts: [], environ: {} }),
    );
    expect(err.message).to.match(
      /is built on musl libc \(it holds \/lib\/ld-musl-x86_64\.so\.1\); the agent's runner environment needs a glibc image/,
    );
    expect(await containersOf(agentId)).to.deep.equal([]);
    expect(await client.call(methods.list_kernels)).to.deep.equal([]);
  });

  it('a warm pool of an image without a runner: the claim gets the environ', async () => {
    const { client, id, agent } = await anyKernel(ANY_IMAGES.python, true);
    expect(agent.warmPool!.idle.size + agent.warmPool!.creating.size).to.be.lessThan(2); // the kernel is the claimed one
    const r = await batch(client, id, 'echo "$GREETING"');
    expect(consoleText(r, 'stdout')).to.equal('hello\n');
  });

  it("an image's app (service ports) starts with the image's own interpreter", async () => {
    await requireRunnerEnv();
    const lang = await relabelled(ANY_IMAGES.python, { 'ai.backend.service-ports': 'http-files:http:9101' });
    const { client } = await startAgent();
    const id = uniqueName('k');
    const info = await client.callWithTimeout(90_000, methods.create_kernel, id, { lang, limits, mounts: [], environ: {} });
    onCleanup(() => client.call(methods.destroy_kernel, id).then(() => undefined));
    expect(info.service_ports).to.have.length(1);
    expect(await client.callWithTimeout(30_000, methods.start_service, id, 'http-files', {})).to.deep.equal({ status: 'started' });
    const port = info.service_ports[0]!.host_port;
    await eventually(
      'the app to answer',
      () =>
        fetch(`http://127.0.0.1:${port}/`).then(
          (r) => r.status === 200,
          () => false,
        ),
      20_000,
      100,
    );
  });

  it("Debian's Jupyter without this project's runner: code runs, and its app answers on its service port", async () => {
    const { client, id, info } = await anyKernel(ANY_IMAGES.jupyter);
    expect(consoleText(await runToEnd(client, id, 'import notebook\nprint(notebook.__name__)'), 'stdout')).to.equal('notebook\n');
    expect(info.service_ports.map((s) => s.name)).to.deep.equal(['jupyter']);
    expect(await client.callWithTimeout(60_000, methods.start_service, id, 'jupyter', {})).to.deep.equal({ status: 'started' });
    const port = info.service_ports[0]!.host_port;
    // Jupyter answers its login page (or a redirect to it) once it listens.
    await eventually(
      'Jupyter to answer',
      () =>
        fetch(`http://127.0.0.1:${port}/login`, { redirect: 'manual' }).then(
          (r) => r.status === 200 || r.status === 302,
          () => false,
        ),
      60_000,
      200,
    );
  });

  describe("user code in the image's own interpreter (the runner's CA_USER_PYTHON)", () => {
    before(async function () {
      if (!(await runnerTakesUserInterpreter())) this.skip(); // the runner's side of issue 32 is not in this checkout yet
    });

    it('query mode runs the image Python (no pyzmq there), with input, interrupt and completions', async () => {
      const { client, id } = await anyKernel(ANY_IMAGES.python);
      const where = await runToEnd(client, id, 'import sys\nprint(sys.executable)\nimport zmq');
      expect(consoleText(where, 'stdout')).to.equal('/usr/bin/python3\n');
      expect(consoleText(where, 'stderr')).to.contain("No module named 'zmq'");
      let r = await client.call(methods.execute, 2, id, null, 'query', 'name = input("who? ")\nprint("hi " + name)', {});
      while (r.status === 'continued') r = await client.call(methods.execute, 2, id, r.runId, 'continue', '', {});
      expect(r.status).to.equal('waiting-input');
      const rest = [await client.call(methods.execute, 2, id, r.runId, 'input', 'bob', {})];
      while (rest.at(-1)!.status === 'continued') rest.push(await client.call(methods.execute, 2, id, r.runId, 'continue', '', {}));
      expect(consoleText(rest, 'stdout')).to.contain('hi bob');
      const busy = await client.call(methods.execute, 2, id, null, 'query', 'while True: pass', {}, 0.3);
      expect(busy.status).to.equal('continued');
      await client.call(methods.interrupt_kernel, id);
      let end = await client.call(methods.execute, 2, id, busy.runId, 'continue', '', {});
      while (end.status === 'continued') end = await client.call(methods.execute, 2, id, busy.runId, 'continue', '', {});
      expect(end.exitCode).to.not.equal(0);
      expect(consoleText(await runToEnd(client, id, 'print(name)'), 'stdout')).to.equal('bob\n'); // the REPL's state survived
      const c = await client.call(methods.get_completions, id, 'pri', {});
      expect(c.completions.some((x) => x.startsWith('print'))).to.equal(true);
    });

    it('query mode in the venv named by the label, and in the shell kernel', async () => {
      const venv = await anyKernel(ANY_IMAGES.venv);
      const r = await runToEnd(venv.client, venv.id, 'import sys, venvmark\nprint(venvmark.WHERE, sys.prefix)');
      expect(consoleText(r, 'stdout')).to.equal('venv /opt/venv\n');
      const sh = await anyKernel(ANY_IMAGES.shell);
      expect(consoleText(await runToEnd(sh.client, sh.id, 'echo q-$((6*7))'), 'stdout')).to.equal('q-42\n');
    });
  });
});
