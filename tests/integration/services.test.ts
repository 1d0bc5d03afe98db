/**
 * Service ports against the real Docker engine, etcd and kernel images
 * (docs/service-ports.rst): a stock aiozmq client calls ping_kernel,
 * interrupt_kernel with the 2017 mode, start_service of the Jupyter image's
 * app and GETs its /api, starts it again, stops it; a bad service-port label
 * is refused at create naming the label; a name the image lacks is the
 * failed map; an app that exits at once is reported failed with its output
 * (its token masked); the app's host port comes from the range.
 */
import { existsSync } from 'node:fs';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import Docker from 'dockerode';
import { methods } from '../../src/rpc/methods.js';
import { runToEnd } from '../helpers/run.js';
import { poolSettled, putPool } from '../helpers/pool.js';
import { derivedImage } from '../helpers/derived-image.js';
import {
  containersOf,
  remoteError,
  REPO_ROOT,
  requireEtcd,
  startAgent,
  TEST_IMAGE_LANG,
  TEST_JUPYTER_LANG,
  uniqueName,
} from '../helpers/env.js';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const SCRIPT = path.join(REPO_ROOT, 'tests/interop/aiozmq_services.py');
const docker = new Docker();
const config = (lang: string) => ({ lang, limits: { cpu_slot: 1, mem_slot: 256, gpu_slot: 0 }, mounts: [], environ: {} });

describe('service ports', function () {
  this.timeout(180_000);
  before(requireEtcd);

  it('serves ping_kernel, interrupt_kernel(kid, mode), start_service and shutdown_service to a stock aiozmq client, Jupyter answering /api', async function () {
    if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: deploy/dev/up.sh installs python3-aiozmq`);
    const { port, ports } = await startAgent();
    const { stdout } = await run(PYTHON, [SCRIPT, `tcp://127.0.0.1:${port}`, TEST_JUPYTER_LANG], { timeout: 150_000 });
    const r = JSON.parse(stdout) as Record<string, any>;
    expect(r.create.service_ports, JSON.stringify(r.create)).to.have.length(1);
    expect(r.create.service_ports[0]).to.include({ name: 'jupyter', protocol: 'http', container_port: 8080 });
    expect(r.create.service_ports[0].host_port).to.be.within(ports.lo, ports.hi);
    expect(r.ping_kernel).to.equal(null);
    expect(r.interrupt_2017).to.equal(null);
    expect(r.interrupt_2018).to.equal(null);
    expect(r.ping_unknown).to.deep.include({ error: 'KeyError' }); // a builtin the 2018 manager handles
    expect(r.ping_unknown.args[1]).to.equal('agent.KernelNotFound');
    expect(r.start).to.deep.equal({ status: 'started' });
    expect(r.api.status, JSON.stringify(r.api)).to.equal(200);
    expect(r.api.body).to.have.property('version').that.is.a('string');
    expect(r.start_again).to.deep.equal({ status: 'running' });
    expect(r.start_unknown).to.deep.equal({ status: 'failed', error: 'invalid service name' });
    const listed = (r.list as Array<{ id: string; services: unknown[] }>).find((k) => k.id === r.create.id);
    expect(listed?.services).to.deep.equal([
      { name: 'jupyter', protocol: 'http', host: '127.0.0.1', host_port: r.create.service_ports[0].host_port, state: 'running' },
    ]);
    expect(r.shutdown).to.deep.equal({ status: 'stopped' });
    expect(r.api_after).to.have.property('error');
    expect(r.shutdown_again).to.deep.equal({ status: 'not-running' });
  });

  it('a kernel claimed from the warm pool has its service ports, from the range, and starts its app', async () => {
    const lang = await derivedImage('http-files:http:9101', {});
    const { client, agent, ports } = await startAgent({}, (ns) => putPool(ns, { [lang]: { small: 1 } }));
    await poolSettled(agent, 1);
    const id = uniqueName('k');
    const info = await client.call(methods.create_kernel, id, config(lang));
    expect((await docker.getContainer(info.container_id).inspect()).Config.Labels).to.have.property('io.compute-agent.pool'); // claimed, not cold
    expect(info.service_ports).to.have.length(1);
    expect(info.service_ports[0]).to.include({ name: 'http-files', container_port: 9101 });
    expect(info.service_ports[0]!.host_port).to.be.within(ports.lo, ports.hi);
    expect(await client.call(methods.start_service, id, 'http-files', {})).to.deep.equal({ status: 'started' });
    expect((await fetch(`http://127.0.0.1:${info.service_ports[0]!.host_port}/`)).status).to.equal(200);
  });

  it('ping_kernel fails naming the kernel when its runner does not answer', async () => {
    const { client } = await startAgent();
    const id = uniqueName('k');
    const info = await client.call(methods.create_kernel, id, config(TEST_IMAGE_LANG));
    expect(await client.call(methods.ping_kernel, id)).to.equal(null);
    await docker.getContainer(info.container_id).pause();
    try {
      const err = await remoteError(client.callWithTimeout(30_000, methods.ping_kernel, id));
      expect(err.remoteType).to.equal('agent.KernelUnresponsive');
      expect(err.message).to.match(new RegExp(`ping_kernel ${id}: the kernel runner did not answer within 10 s`));
    } finally {
      await docker.getContainer(info.container_id).unpause();
    }
    // The agent waits up to 10 s for an answer, so the client gives it longer than its default 5 s: the lane first takes the
    // late answer of the ping that timed out (src/relay/requests.ts), which a loaded machine may make take seconds.
    expect(await client.callWithTimeout(15_000, methods.ping_kernel, id)).to.equal(null);
  });

  it('refuses a bad service-port label at create, naming it, and takes nothing', async () => {
    const lang = await derivedImage('jupyter:http:2001', {});
    const { client, agent, agentId } = await startAgent();
    const err = await remoteError(client.call(methods.create_kernel, uniqueName('k'), config(lang)));
    expect(err.message).to.match(
      /ai\.backend\.service-ports="jupyter:http:2001" is invalid: port 2001 of jupyter is one of the runner's ports/,
    );
    expect(await containersOf(agentId)).to.have.length(0);
    expect(agent.portStats()).to.include({ held: 0 });
  });

  it('reports a name the image lacks as failed, an app that exits at once with its output (its token masked), and starts a working one', async () => {
    const lang = await derivedImage('crash:tcp:9100,http-files:http:9101,nodef:tcp:9102', {
      crash: { command: ['/bin/sh', '-c', 'echo starting with {token}; echo it broke >&2; exit 3'], random: ['token'] },
    });
    const { client } = await startAgent();
    const id = uniqueName('k');
    const info = await client.call(methods.create_kernel, id, config(lang));
    expect(info.service_ports.map((p) => [p.name, p.container_port])).to.deep.equal([
      ['crash', 9100],
      ['http-files', 9101],
      ['nodef', 9102],
    ]);
    expect(await client.call(methods.start_service, id, 'jupyter', {})).to.deep.equal({ status: 'failed', error: 'invalid service name' });
    const crashed = await client.call(methods.start_service, id, 'crash', { token: 'sekrit-123' });
    expect(crashed.status).to.equal('failed');
    expect(crashed.error).to.match(/crash exited with status 3; its last output: starting with \*\*\* \| it broke/);
    expect(crashed.error).to.not.contain('sekrit-123');
    expect(await client.call(methods.get_logs, id).then((l) => l.logs)).to.not.contain('sekrit-123');
    expect(await client.call(methods.start_service, id, 'nodef', {})).to.deep.equal({ status: 'failed', error: 'invalid service name' });
    expect(await client.call(methods.start_service, id, 'http-files', {})).to.deep.equal({ status: 'started' });
    const files = info.service_ports.find((p) => p.name === 'http-files')!;
    const res = await fetch(`http://127.0.0.1:${files.host_port}/`);
    expect(res.status).to.equal(200);
    // an app that dies after it started is reported once, then started again: nothing restarts it behind the manager's back
    // (and waits until it is gone: SIGTERM takes a moment, more on a loaded machine)
    await runToEnd(
      client,
      id,
      'import subprocess, time\nsubprocess.run(["pkill", "-f", "http.server"])\nfor _ in range(100):\n    if subprocess.run(["pgrep", "-f", "http.server"]).returncode != 0: break\n    time.sleep(0.1)',
    );
    const died = await client.call(methods.start_service, id, 'http-files', {});
    expect(died.status).to.equal('failed');
    expect(died.error).to.match(/^http-files exited with status -15; its last output: /);
    expect(await client.call(methods.start_service, id, 'http-files', {})).to.deep.equal({ status: 'started' });
    expect(await client.call(methods.shutdown_service, id, 'http-files')).to.deep.equal({ status: 'stopped' });
    // restart_kernel keeps the apps (on new host ports)
    const again = await client.call(methods.restart_kernel, id, config(lang));
    expect(again.service_ports.map((p) => p.name)).to.deep.equal(['crash', 'http-files', 'nodef']);
    expect(await client.call(methods.start_service, id, 'http-files', {})).to.deep.equal({ status: 'started' });
  });
});
