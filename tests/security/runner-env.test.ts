/**
 * The runner environment the agent mounts into kernels of images without a
 * runner (src/containers/runner-env.ts), against hostile kernels and images:
 * a kernel cannot write into it (it is mounted read-only, so one kernel
 * cannot change what the next one runs: every file still matches its
 * manifest afterwards), and an image's labels cannot make the agent mount
 * anything else or read a host path: `ai.backend.runtime-path` is handed to
 * the entrypoint as a path inside the container, whatever it says (`..`, a
 * host path), and one that is not a plain absolute path is refused.
 */
import { expect } from 'chai';
import Docker from 'dockerode';
import { methods } from '../../src/rpc/methods.js';
import { checkRunnerEnv, RUNNER_ENV_MOUNT } from '../../src/containers/runner-env.js';
import { containersOf, onCleanup, remoteError, requireEtcd, startAgent, uniqueName } from '../helpers/env.js';
import { consoleText } from '../helpers/run.js';
import { ANY_IMAGES, batch, relabelled, requireRunnerEnv } from '../helpers/any-image.js';

const docker = new Docker();
const limits = { cpu_slot: 1, mem_slot: 256 };

describe('the injected runner environment against hostile kernels and image labels', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('is read-only to the kernel, and intact after a kernel tried to change it', async () => {
    const env = await requireRunnerEnv();
    const lang = await relabelled(ANY_IMAGES.python, {});
    const { client } = await startAgent();
    const id = uniqueName('k');
    await client.callWithTimeout(90_000, methods.create_kernel, id, { lang, limits, mounts: [], environ: {} });
    onCleanup(() => client.call(methods.destroy_kernel, id).then(() => undefined));
    const E = RUNNER_ENV_MOUNT;
    const tries = [
      `echo pwned >> ${E}/kernel/runner.py`,
      `touch ${E}/planted`,
      `rm -f ${E}/bin/busybox`,
      `chmod 777 ${E}/entrypoint.sh`,
      `ln -sf /home/work/evil ${E}/usr/bin/python3.11`,
    ];
    const r = await batch(client, id, tries.map((t) => `${t} 2>&1 || echo refused`).join('; '));
    const out = consoleText(r, 'stdout');
    expect(out.match(/refused/g)).to.have.length(tries.length);
    expect(out).to.contain('Read-only file system');
    await checkRunnerEnv(env.dir, true); // every file as its manifest says
  });

  it('takes runtime-path as a path inside the container, whatever it says: nothing else mounted, no host path read', async () => {
    const env = await requireRunnerEnv();
    const hostPath = `${env.dir}/../../../../etc/shadow`;
    const lang = await relabelled(ANY_IMAGES.python, { 'ai.backend.runtime-type': 'python', 'ai.backend.runtime-path': hostPath });
    const { client, agentId } = await startAgent();
    const id = uniqueName('k');
    await client.callWithTimeout(90_000, methods.create_kernel, id, { lang, limits, mounts: [], environ: {} });
    onCleanup(() => client.call(methods.destroy_kernel, id).then(() => undefined));
    const [c] = await containersOf(agentId);
    const info = await docker.getContainer(c!.Id).inspect();
    expect(info.Mounts.map((m) => m.Destination).sort()).to.deep.equal(['/home/work', RUNNER_ENV_MOUNT]);
    expect(info.Config.Env).to.include(`CA_USER_PYTHON=${hostPath}`);
    const { logs } = await client.call(methods.get_logs, id);
    expect(logs).to.contain(`the image's runtime-path ${hostPath} is not a Python 3 this container can run; looking on PATH`);
    expect(logs).to.contain("user code runs with the image's Python /usr/bin/python3");
    const r = await batch(client, id, `cat ${hostPath} 2>&1 || echo unreadable`);
    expect(consoleText(r, 'stdout')).to.match(/unreadable\n$/); // the container's own /etc/shadow is not readable by the kernel user; the host's is not there
  });

  it('refuses an image whose runtime-path is not a plain absolute path, taking nothing', async () => {
    await requireRunnerEnv();
    const lang = await relabelled(ANY_IMAGES.python, { 'ai.backend.runtime-path': 'python3 -c import os' });
    const { client, agentId } = await startAgent();
    const err = await remoteError(
      client.callWithTimeout(60_000, methods.create_kernel, uniqueName('k'), { lang, limits, mounts: [], environ: {} }),
    );
    expect(err.message).to.contain('its label ai.backend.runtime-path="python3 -c import os" is not an absolute path');
    expect(await containersOf(agentId)).to.deep.equal([]);
  });
});
