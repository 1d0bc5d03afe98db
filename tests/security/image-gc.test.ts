/**
 * The image collector (src/images/gc.ts) removes only what is the agent's to
 * remove, whatever a registry serves or a kernel image's labels claim: an
 * image under the kernel prefix that says it is a kernel image but that
 * another program's container uses, one whose id also carries a name that is
 * not the agent's, and one under the kernel prefix without kernel labels all
 * stay, as does a kernel-labelled image outside the prefix; an unused one of
 * the agent's goes, so the pass really ran. Images made with `docker import`
 * (empty, labels set with --change), no registry needed. And an image the
 * agent pulled that another program then pulled by digest from a repository
 * of its own (the same manifest) stays too: its other `repo@digest` name is
 * not the agent's.
 */
import { spawnSync } from 'node:child_process';
import { expect } from 'chai';
import Docker from 'dockerode';
import { methods } from '../../src/rpc/methods.js';
import { onCleanup, requireEtcd, startAgent, uniqueName } from '../helpers/env.js';
import { deleteFromRegistry, hasImage, pushTestImage, REGISTRY, requireRegistry } from '../helpers/registry.js';
import { removeImageAfterTest } from '../helpers/derived-image.js';

const docker = new Docker();

/** An empty image named `name` with the labels given, removed after the test; its id. */
async function importImage(name: string, labels: Record<string, string>): Promise<string> {
  removeImageAfterTest(name);
  const changes = Object.entries(labels).flatMap(([k, v]) => ['--change', `LABEL ${k}=${v}`]);
  const script = 'name=$1; shift; tar -cf - -T /dev/null | docker import --message "$0" "$@" - "$name"';
  const r = spawnSync('sh', ['-c', script, uniqueName('gc'), name, ...changes], { encoding: 'utf8' });
  expect(r.status, r.stderr).to.equal(0);
  return (await docker.getImage(name).inspect()).Id;
}

describe("security: the image collector removes only what is the agent's", function () {
  this.timeout(60_000);
  before(requireEtcd);

  it('keeps a spoofed kernel image another program uses, a shared id, an unlabelled image and one outside the prefix', async () => {
    const ns = uniqueName('gc');
    const prefix = `${ns}/kernel-`;
    const kernel = { 'io.sorna.features': 'query', 'ai.backend.kernelspec': '1' };
    const spoofId = await importImage(`${prefix}python:spoof`, kernel);
    const other = await docker.createContainer({ Image: spoofId, Cmd: ['none'], Labels: { 'io.compute-agent.test': ns } });
    onCleanup(() => other.remove({ force: true }).catch(() => undefined));
    const sharedId = await importImage(`${prefix}python:shared`, kernel);
    await docker.getImage(sharedId).tag({ repo: `${ns}-other/app`, tag: '1' });
    removeImageAfterTest(`${ns}-other/app:1`);
    await importImage(`${prefix}python:plain`, {});
    await importImage(`${ns}-outside/kernel-python:x`, kernel);
    const freeId = await importImage(`${prefix}python:free`, kernel);

    const a = await startAgent({}, async (etcd) => {
      await etcd.put('config/agent/image_prefix').value(prefix);
      await etcd.put('config/agent/image_gc_low').value('0'); // a pass asked for removes every image that may go
    });
    const r = await a.client.callWithTimeout(60_000, methods.gc_images, false);
    expect(r.removed.map((x) => [x.image, x.id])).to.deep.equal([[`${prefix}python:free`, freeId]]);
    expect(Object.fromEntries(r.kept.map((k) => [k.image, k.reason]))).to.deep.equal({
      [`${prefix}python:spoof`]: 'a container uses it (running or stopped)',
      [`${prefix}python:shared`]: `also named ${ns}-other/app:1, which is not a kernel image name of this agent`,
      [`${prefix}python:plain`]: 'not a kernel image (no ai.backend.* or io.sorna.* label)',
    });
    expect(r.failed).to.deep.equal([]);
    expect(await hasImage(`${prefix}python:free`)).to.equal(false);
    for (const name of ['spoof', 'shared', 'plain']) expect(await hasImage(`${prefix}python:${name}`), name).to.equal(true);
    expect((await docker.getImage(`${ns}-other/app:1`).inspect()).Id).to.equal(sharedId);
    expect(await hasImage(`${ns}-outside/kernel-python:x`)).to.equal(true);
    expect((await other.inspect()).Image).to.equal(spoofId);
  });

  it('keeps an image it pulled that another program also pulled by digest under another name', async () => {
    await requireRegistry();
    const img = await pushTestImage({ noiseBytes: 64 * 1024 });
    const a = await startAgent({}, async (etcd) => {
      await etcd.put('config/agent/image_prefix').value(img.prefix);
      await etcd.put('config/agent/image_gc_low').value('0');
    });
    await a.client.callWithTimeout(60_000, methods.pull_image, img.lang);
    const id = (await docker.getImage(img.image).inspect()).Id;
    // another program's repository with the same image, pulled by digest (a name with no tag)
    const otherPath = `${uniqueName('test')}/other-app`;
    const other = `${REGISTRY}/${otherPath}`;
    onCleanup(() => deleteFromRegistry(otherPath, 'y'));
    await docker.getImage(img.image).tag({ repo: other, tag: 'y' });
    removeImageAfterTest(`${other}:y`);
    const push = spawnSync('docker', ['push', '-q', `${other}:y`], { encoding: 'utf8' });
    expect(push.status, push.stderr).to.equal(0);
    const digest = (await docker.getImage(`${other}:y`).inspect()).RepoDigests!.find((d) => d.startsWith(`${other}@`))!;
    await docker.getImage(`${other}:y`).remove();
    const pull = spawnSync('docker', ['pull', '-q', digest], { encoding: 'utf8' });
    expect(pull.status, pull.stderr).to.equal(0);
    removeImageAfterTest(digest);
    const r = await a.client.callWithTimeout(60_000, methods.gc_images, false);
    expect(r.removed).to.deep.equal([]);
    expect(r.kept).to.deep.equal([
      { image: img.image, id, reason: `also named ${digest}, which is not a kernel image name of this agent` },
    ]);
    const left = await docker.getImage(id).inspect();
    expect(left.RepoTags).to.deep.equal([img.image]);
    expect(left.RepoDigests).to.include(digest);
  });
});
