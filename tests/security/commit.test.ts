/**
 * Saving a kernel as an image, from the side of a hostile manager or
 * kernel: a manager's name cannot tag over an image the agent did not save
 * (the shared kernel image), push to a registry the agent may not use, or
 * set the agent's own labels; a kernel's environ (its secrets) and its home
 * never end up in the image.
 */
import { expect } from 'chai';
import Docker from 'dockerode';
import { methods } from '../../src/rpc/methods.js';
import { LABELS } from '../../src/adapters/labels.js';
import { onCleanup, remoteError, requireEtcd, startAgent, TEST_IMAGE_LANG, TEST_IMAGE_PREFIX, uniqueName } from '../helpers/env.js';
import { runToEnd } from '../helpers/run.js';
import { imagesOfKernel, removeImagesOfKernelAfterTest } from '../helpers/commit.js';
import { removeLocal } from '../helpers/registry.js';

const docker = new Docker();
const PARAMS = 'aiozmq.rpc.base.ParametersError';

describe('security: saving a kernel as an image', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it("refuses to tag over or push images not its own, registries it may not use and the agent's labels; secrets and the home stay out", async () => {
    const kid = uniqueName('k');
    removeImagesOfKernelAfterTest(kid);
    const secret = `hunter2-${uniqueName('s')}`;
    const a = await startAgent();
    await a.client.callWithTimeout(90_000, methods.create_kernel, kid, {
      lang: TEST_IMAGE_LANG,
      limits: { cpu_slot: 1, mem_slot: 256, gpu_slot: 0 },
      mounts: [],
      environ: { AWS_SECRET_ACCESS_KEY: secret },
    });
    // the kernel writes the secret into its home, as code that reads its environment may
    await runToEnd(a.client, kid, "import os\nopen('/home/work/secret.txt', 'w').write(os.environ['AWS_SECRET_ACCESS_KEY'])");

    const shared = TEST_IMAGE_PREFIX + TEST_IMAGE_LANG;
    const sharedId = (await docker.getImage(shared).inspect()).Id;
    const over = await remoteError(a.client.call(methods.commit_kernel, kid, shared, true));
    expect(over.remoteType).to.equal(PARAMS);
    expect(over.message).to.include('was not saved by this agent');
    expect((await docker.getImage(shared).inspect()).Id).to.equal(sharedId);
    const pushShared = await remoteError(a.client.call(methods.push_image, shared));
    expect(pushShared.message).to.include('pushes only images it saved');

    for (const elsewhere of ['evil.example.com/x/kernel-python:t', '127.0.0.1:5000/other/kernel-python:t', 'ubuntu:latest']) {
      expect((await remoteError(a.client.call(methods.commit_kernel, kid, elsewhere, true))).remoteType, elsewhere).to.equal(PARAMS);
      const push = await remoteError(a.client.call(methods.push_image, elsewhere));
      expect(push.remoteType, elsewhere).to.equal(PARAMS);
      expect(push.message).to.include('image_allow_list');
    }
    const mine = `${TEST_IMAGE_PREFIX}python:${uniqueName('saved').toLowerCase()}`;
    onCleanup(() => removeLocal(mine));
    for (const labels of [{ [LABELS.agent]: 'someone-else' }, { [LABELS.kernel]: 'k' }, { 'io.compute-agent.test': 'x\ny' }]) {
      expect((await remoteError(a.client.call(methods.commit_kernel, kid, mine, true, labels))).remoteType).to.equal(PARAMS);
    }
    expect(await imagesOfKernel(kid)).to.deep.equal([]);

    const r = await a.client.callWithTimeout(120_000, methods.commit_kernel, kid, mine, true, { 'io.compute-agent.test': 'commit' });
    const saved = await docker.getImage(mine).inspect();
    expect(saved.Id).to.equal(r.image_id);
    expect(JSON.stringify(saved)).not.to.include(secret);
    expect(JSON.stringify((await docker.getImage(mine).history()) as unknown)).not.to.include(secret);
    expect(
      Object.keys(saved.Config.Labels)
        .filter((k) => k.startsWith('io.compute-agent.'))
        .sort(),
    ).to.deep.equal([LABELS.committedFrom, 'io.compute-agent.test']);
    // nowhere in its files either (the home, with .config/environ.txt, is a mount: never committed)
    const c = await docker.createContainer({
      Image: mine,
      Entrypoint: ['/bin/sh', '-c'],
      Cmd: [`grep -rlsF '${secret}' /home /etc /tmp /opt /root /var; ls -A /home/work`],
      Labels: { 'io.compute-agent.test': 'commit' },
      Tty: true, // the log without stream headers
    });
    onCleanup(() => c.remove({ force: true }).catch(() => undefined));
    await c.start();
    await c.wait();
    const out = (await c.logs({ stdout: true, stderr: true })).toString('utf8');
    expect(out).not.to.include(secret);
    expect(out).not.to.include('/'); // grep named no file
    expect(out).not.to.include('secret.txt');
  });
});
