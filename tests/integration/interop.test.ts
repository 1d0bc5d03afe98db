/**
 * Interoperability with the stock Python client: Debian's python3-aiozmq
 * (`aiozmq.rpc.connect_rpc`) calls the agent. This proves the wire, not our
 * own reading of it.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { REPO_ROOT, requireEtcd, startAgent, TEST_IMAGE_LANG } from '../helpers/env.js';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3'; // Debian's, which has python3-aiozmq; not a pyenv one
const SCRIPT = path.join(REPO_ROOT, 'tests/interop/aiozmq_client.py');

describe('interop with the stock aiozmq.rpc client', () => {
  before(async function () {
    await requireEtcd();
    if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: deploy/dev/up.sh installs python3-aiozmq`);
  });

  it('calls ping, an unknown method, a wrong argument count, a missing image and an unknown kernel, and runs code in a kernel', async function () {
    this.timeout(90_000);
    const { port } = await startAgent();
    const { stdout } = await run(PYTHON, [SCRIPT, `tcp://127.0.0.1:${port}`, TEST_IMAGE_LANG], { timeout: 60_000 });
    const results = JSON.parse(stdout) as Record<string, unknown>;
    expect(results.ping).to.equal('hello');
    expect(results.ping_unicode).to.equal('héllo ☃');
    expect(results.nosuch).to.deep.equal({ error: 'NotFoundError', args: ['nosuch'] });
    expect(results.wrong_count).to.have.property('error', 'ParametersError');
    expect(results.wrong_type).to.have.property('error', 'ParametersError');
    // builtin names, which the 2018 manager handles, with the agent's own kind as the last arg
    expect(results.create_kernel).to.deep.include({ error: 'LookupError' });
    expect((results.create_kernel as { args: string[] }).args[0]).to.match(/lablup\/kernel-python:3\.6-debian is not on this node/);
    expect((results.create_kernel as { args: string[] }).args[1]).to.equal('agent.ImageNotFound');
    expect(results.execute).to.deep.include({ error: 'RuntimeError' });
    expect((results.execute as { args: string[] }).args[1]).to.equal('agent.KernelNotFound');
    expect(results.many).to.equal(100);
    // as the 2018 manager would: create a kernel, run print("hello") in it, destroy it
    const k = results.kernel as { ports: number[]; status: string; stdout: string; stats_keys: string[] };
    expect(k.status, JSON.stringify(k)).to.equal('finished');
    expect(k.stdout).to.equal('hello\n');
    expect(k.ports.every((p) => p > 0)).to.equal(true);
    expect(k.stats_keys).to.include('cpu_used');
  });
});
