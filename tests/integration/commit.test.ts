/**
 * A kernel saved as an image (commit_kernel), pushed to the local registry
 * (push_image) and used as a kernel image by another agent, against the real
 * engine and registry; the same through a 24.09 manager's commit and
 * push_image; and the failure paths: a registry that refuses the push (no
 * credentials), one where nothing listens, one that never answers
 * (push_timeout), a kernel destroyed during its commit, an engine whose
 * data root is full (a proxy of the test's own answers Docker's error: the
 * tests cannot fill the real data root), bad names.
 */
import { expect } from 'chai';
import Docker from 'dockerode';
import net from 'node:net';
import { methods } from '../../src/rpc/methods.js';
import { modernMethods } from '../../src/rpc/modern-methods.js';
import { LABELS } from '../../src/adapters/labels.js';
import {
  eventually,
  freePort,
  loopbackAgentFlags,
  onCleanup,
  remoteError,
  removeContainersOf,
  requireEtcd,
  spawnAgent,
  startAgent,
  TEST_IMAGE_LANG,
  TEST_IMAGE_PREFIX,
  uniqueName,
} from '../helpers/env.js';
import { sink } from '../helpers/sink.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { authRegistry, deleteFromRegistry, hasImage, registryDigest, removeLocal, REGISTRY, requireRegistry } from '../helpers/registry.js';
import { imagesOfKernel, removeImagesOfKernelAfterTest } from '../helpers/commit.js';
import { agentctl } from '../helpers/ctl.js';
import { dockerProxy } from '../helpers/docker-proxy.js';
import { AgentClient } from '../../src/rpc/client.js';
import { ModernManager, modernKernelConfig, REDIS_ADDR, StreamReader } from '../helpers/modern-manager.js';

const docker = new Docker();
const config = (lang: string, environ: Record<string, string> = {}) => ({
  lang,
  limits: { cpu_slot: 1, mem_slot: 256, gpu_slot: 0 },
  mounts: [],
  environ,
});
const TEST_LABELS = { 'io.compute-agent.test': 'commit' };

/** An agent that may name `allowed` (full image names), sending events to a sink of its own; `push_timeout` when given. */
async function agentAllowing(allowed: string[], pushTimeout?: number) {
  const s = await sink();
  const a = await startAgent({}, async (ns) => {
    await ns.put('nodes/manager/event_addr').value(s.addr);
    await ns.put('config/agent/image_allow_list').value(allowed.join(','));
    if (pushTimeout !== undefined) await ns.put('config/agent/push_timeout').value(String(pushTimeout));
  });
  return { ...a, sink: s };
}

/** An untagged commit of a container with `agentId`'s labels, as a stop between a commit's two steps leaves it; removed after the test. */
async function leftStep(agentId: string): Promise<string> {
  const c = await docker.createContainer({
    Image: TEST_IMAGE_PREFIX + TEST_IMAGE_LANG,
    Entrypoint: ['/bin/true'],
    Labels: { [LABELS.agent]: agentId, [LABELS.kernel]: uniqueName('k'), ...TEST_LABELS },
  });
  onCleanup(() => c.remove({ force: true }).catch(() => undefined));
  const { Id } = (await c.commit({})) as { Id: string };
  onCleanup(() =>
    docker
      .getImage(Id)
      .remove({ force: true })
      .catch(() => undefined),
  );
  return Id;
}

/** A saved image's name in the local registry, removed there and here after the test. */
function registryTarget(tag: string): { image: string; repo: string } {
  const repo = `${uniqueName('test')}/kernel-python`;
  const image = `${REGISTRY}/${repo}:${tag}`;
  onCleanup(() => deleteFromRegistry(repo, tag));
  onCleanup(() => removeLocal(image));
  return { image, repo };
}

describe('commit: a kernel saved as an image, pushed and used', function () {
  this.timeout(300_000); // a commit and a push under a loaded suite took over 180 s once (the calls themselves are bounded at 120 s each)
  before(async () => {
    await requireEtcd();
    await requireRegistry();
  });

  it('keeps what was installed (not the home, not the environ), pushes it once for two callers, and another agent runs a kernel from it', async () => {
    const kid = uniqueName('k');
    removeImagesOfKernelAfterTest(kid);
    const target = registryTarget('saved');
    const secret = `s3cr3t-${uniqueName('v')}`;
    const mod = `mymod_${uniqueName('m').replace(/-/g, '_')}`;
    const a = await agentAllowing([target.image]);
    await a.client.callWithTimeout(90_000, methods.create_kernel, kid, config(TEST_IMAGE_LANG, { SECRET_TOKEN: secret }));
    // what `pip install --user` does, as the kernel's own user (the test image has no pip): a module in the user site, which is outside the home
    const installed = await runToEnd(
      a.client,
      kid,
      `import os, site\nd = site.getusersitepackages()\nos.makedirs(d, exist_ok=True)\nopen(os.path.join(d, '${mod}.py'), 'w').write('VALUE = 42')\nprint(d)`,
    );
    expect(consoleText(installed, 'stderr')).to.equal('');
    expect(consoleText(installed, 'stdout')).to.match(/^\/opt\/user-packages\/lib\/python3[.0-9]*\/site-packages\n$/);
    expect(consoleText(await runToEnd(a.client, kid, "open('/home/work/note.txt', 'w').write('home')"), 'stderr')).to.equal('');

    const t0 = Date.now();
    const r = await a.client.callWithTimeout(120_000, methods.commit_kernel, kid, target.image, true, TEST_LABELS);
    const commitMs = Date.now() - t0;
    expect(r).to.include({ kernel: kid, image: target.image, status: 'ready' });
    expect(r.image_id).to.match(/^sha256:[0-9a-f]{64}$/);
    expect((await a.sink.next('image_commit_started')).args).to.deep.equal([kid, target.image]);
    expect((await a.sink.next('image_commit_finished')).args).to.deep.equal([kid, target.image, r.image_id]);
    const status = await a.client.call(methods.get_commit_status, kid);
    expect(status.status).to.equal('ready');
    expect(status.last).to.include({ image: target.image, image_id: r.image_id, error: null });

    const saved = await docker.getImage(target.image).inspect();
    const base = await docker.getImage(TEST_IMAGE_PREFIX + TEST_IMAGE_LANG).inspect();
    expect(saved.Id).to.equal(r.image_id);
    expect(saved.Config.Labels[LABELS.committedFrom]).to.equal(kid);
    expect(saved.Config.Labels['io.sorna.features']).to.equal(base.Config.Labels['io.sorna.features']);
    expect(saved.Config.Labels[LABELS.kernel]).to.equal(undefined);
    expect(saved.Config.Labels[LABELS.agent]).to.equal(undefined);
    expect(saved.Config.Env).to.deep.equal(base.Config.Env);
    expect(saved.Config.Entrypoint).to.deep.equal(base.Config.Entrypoint);
    expect(saved.Config.Cmd).to.deep.equal(base.Config.Cmd);
    expect(JSON.stringify(saved)).not.to.include(secret);
    // nothing but the saved image is left of the commit (the intermediate one is gone)
    expect((await imagesOfKernel(kid)).map((i) => i.id)).to.deep.equal([saved.Id]);
    // the kernel kept running
    expect(consoleText(await runToEnd(a.client, kid, 'print(6 * 7)'), 'stdout')).to.equal('42\n');
    // the image collector keeps a saved image until its first push: it is the only copy
    const before = await a.client.callWithTimeout(60_000, methods.gc_images, true);
    expect(before.removed.map((e) => e.image)).not.to.include(target.image);
    expect(before.kept.find((e) => e.image === target.image)?.reason).to.include('never pushed');

    const t1 = Date.now();
    const [p1, p2] = await Promise.all([
      a.client.callWithTimeout(120_000, methods.push_image, target.image),
      a.client.callWithTimeout(120_000, methods.push_image, target.image),
    ]);
    const pushMs = Date.now() - t1;
    expect(p1).to.deep.equal(p2);
    expect(p1.digest).to.equal(await registryDigest(target.repo, 'saved'));
    expect((await a.sink.next('image_push_finished')).args).to.deep.equal([target.image]);
    expect(a.sink.events.filter((e) => e.name === 'image_push_finished')).to.have.length(1);
    const progress = a.sink.events.filter((e) => e.name === 'image_push_progress').at(-1)!.args as [string, number, number];
    expect(progress[0]).to.equal(target.image);
    expect(progress[1]).to.equal(progress[2]);
    // pushed, it is a kernel image like the others: it may go when no kernel uses it (a dry run lists what a pass would take)
    const after = await a.client.callWithTimeout(60_000, methods.gc_images, true);
    expect(after.removed.map((e) => e.image)).to.include(target.image);

    await a.client.callWithTimeout(60_000, methods.destroy_kernel, kid);
    await removeLocal(target.image);
    expect(await hasImage(target.image)).to.equal(false);

    // another agent, which has never seen the image, pulls it and runs a kernel from it
    const b = await agentAllowing([target.image]);
    const kid2 = uniqueName('k');
    await b.client.callWithTimeout(120_000, methods.create_kernel, kid2, config(target.image));
    const out = consoleText(
      await runToEnd(
        b.client,
        kid2,
        `import os, ${mod}\nprint(${mod}.VALUE, os.environ.get('SECRET_TOKEN'), os.path.exists('/home/work/note.txt'))`,
      ),
      'stdout',
    );
    expect(out).to.equal('42 None False\n');
    await b.client.callWithTimeout(60_000, methods.destroy_kernel, kid2);
    if (process.env.TEST_LOG) console.log(`      commit ${commitMs} ms, push ${pushMs} ms`);
  });

  it('refuses bad names and images not its own, fails pushes a registry refuses, where nothing listens or nothing answers, and survives a destroy during a commit: nothing left behind', async () => {
    const kid = uniqueName('k');
    removeImagesOfKernelAfterTest(kid);
    const dead = `127.0.0.1:${await freePort()}/${uniqueName('test')}/kernel-python:t`;
    const raced = registryTarget('raced');
    // a "registry" that takes connections and never answers: only push_timeout ends a push to it
    const held: net.Socket[] = [];
    const silentServer = net.createServer((sock) => void held.push(sock)).listen(0, '127.0.0.1');
    await new Promise((resolve) => silentServer.once('listening', resolve));
    onCleanup(() => {
      for (const sock of held) sock.destroy();
      silentServer.close();
    });
    const silent = `127.0.0.1:${(silentServer.address() as net.AddressInfo).port}/${uniqueName('test')}/kernel-python:t`;
    // a registry that wants credentials etcd does not have: it refuses the push
    const guarded = `${(await authRegistry('agent', uniqueName('pw'))).addr}/${uniqueName('test')}/kernel-python:t`;
    onCleanup(() => removeLocal(dead));
    onCleanup(() => removeLocal(silent));
    onCleanup(() => removeLocal(guarded));
    const a = await agentAllowing([dead, silent, guarded, raced.image], 2);
    await a.client.callWithTimeout(90_000, methods.create_kernel, kid, config(TEST_IMAGE_LANG));
    const shared = TEST_IMAGE_PREFIX + TEST_IMAGE_LANG;
    const sharedId = (await docker.getImage(shared).inspect()).Id;

    for (const bad of ['Not An Image!', `${REGISTRY}/elsewhere/kernel-python:x`, `${shared}@sha256:${'0'.repeat(64)}`]) {
      const e = await remoteError(a.client.call(methods.commit_kernel, kid, bad, true));
      expect(e.remoteType, bad).to.equal('aiozmq.rpc.base.ParametersError');
    }
    const over = await remoteError(a.client.call(methods.commit_kernel, kid, shared, true));
    expect(over.message).to.include('was not saved by this agent');
    expect((await docker.getImage(shared).inspect()).Id).to.equal(sharedId);

    // a registry where nothing listens: a clear failure, the saved image stays here
    const r = await a.client.callWithTimeout(120_000, methods.commit_kernel, kid, dead, true, TEST_LABELS);
    const failed = await remoteError(a.client.callWithTimeout(120_000, methods.push_image, dead));
    expect(failed.remoteType).to.equal('agent.ImagePushFailed');
    expect(failed.message).to.include(dead);
    expect((await a.sink.next('image_push_failed')).args[0]).to.equal(dead);
    expect((await docker.getImage(dead).inspect()).Id).to.equal(r.image_id);
    const g = await a.client.callWithTimeout(120_000, methods.commit_kernel, kid, guarded, true, TEST_LABELS);
    const refused = await remoteError(a.client.callWithTimeout(120_000, methods.push_image, guarded));
    expect(refused.remoteType).to.equal('agent.ImagePushFailed');
    expect(refused.message).to.match(/refused the push|cannot push/);
    expect(refused.message.toLowerCase()).to.match(/auth|unauthorized|denied/);
    expect((await docker.getImage(guarded).inspect()).Id).to.equal(g.image_id);

    // through agentctl: a registry that never answers is given up after push_timeout (2 s), the image stays here
    const ctlArgs = ['--agent', `tcp://127.0.0.1:${a.port}`];
    const saved = await agentctl([...ctlArgs, 'commit', '--json', kid, silent], { timeoutMs: 120_000 });
    expect(saved.code, saved.stderr).to.equal(0);
    expect(JSON.parse(saved.stdout)).to.include({ kernel: kid, image: silent, status: 'ready' });
    const t0 = Date.now();
    const stuck = await agentctl([...ctlArgs, 'push', silent], { timeoutMs: 120_000 });
    const stuckMs = Date.now() - t0;
    expect(stuck.code).not.to.equal(0);
    expect(stuck.stderr).to.include('push_timeout (2 s)');
    expect(stuckMs, 'not before push_timeout').to.be.at.least(2000);
    expect(stuckMs, 'aborted at push_timeout, not left hanging (generous: a loaded machine)').to.be.below(30_000);
    expect(await hasImage(silent)).to.equal(true);

    // destroyed while being saved: the engine holds the container for the commit, so the commit ends (whole, or failed
    // cleanly when the destroy came first) and leaves no intermediate image
    const asked = Date.now();
    const started = await a.client.call(methods.commit_kernel, kid, raced.image, false, TEST_LABELS);
    expect(started.status).to.equal('ongoing');
    await a.client.callWithTimeout(60_000, methods.destroy_kernel, kid);
    const ends = [a.sink.next('image_commit_finished', asked, 60_000), a.sink.next('image_commit_failed', asked, 60_000)];
    for (const e of ends) e.catch(() => undefined); // one of the two never comes
    const end = await Promise.race(ends);
    expect(end.args[1]).to.equal(raced.image);
    const left = await imagesOfKernel(kid);
    expect(left.filter((i) => !i.saved)).to.deep.equal([]);
    if (end.name === 'image_commit_failed') {
      expect(await hasImage(raced.image)).to.equal(false);
      expect(String(end.args[2])).to.include('nothing was left behind');
    } else {
      expect(await hasImage(raced.image)).to.equal(true);
    }
    expect((await a.client.call(methods.get_commit_status, kid)).status).to.equal('ready');
  });
  it('serves a 24.09 manager: commit and push_image are background tasks whose ends the Redis stream tells', async () => {
    const agentId = uniqueName('i-test');
    const events = new StreamReader(REDIS_ADDR, agentId);
    onCleanup(() => events.close());
    await events.mark();
    const target = registryTarget('modern');
    const { port } = await startAgent({ agentId }, async (ns) => {
      await ns.put('config/redis/addr').value(REDIS_ADDR);
      await ns.put('config/agent/image_allow_list').value(target.image);
    });
    const m = new ModernManager(`tcp://127.0.0.1:${port}`);
    onCleanup(() => m.close());
    const sid = uniqueName('s');
    const kid = uniqueName('k');
    removeImagesOfKernelAfterTest(kid);
    await m.createKernels(sid, [kid], [modernKernelConfig()]);
    const ended = (task: string) =>
      events.waitFor(`the end of task ${task}`, (e) => e.name.startsWith('bgtask_') && e.args[0] === task, 60_000);

    // as 24.09's manager sends it: the owner's email as subdir, the rest as keywords
    const saving = (await m.client.callRaw('commit', [kid, 'user@example.com'], {
      canonical: target.image,
      filename: null,
      extra_labels: TEST_LABELS,
    })) as { bgtask_id: string; kernel: string; path: null };
    expect(saving).to.include({ kernel: kid, path: null });
    const saved = await ended(saving.bgtask_id);
    expect(saved.name, JSON.stringify(saved.args)).to.equal('bgtask_done');
    expect(await m.client.call(modernMethods.get_commit_status, kid, 'user@example.com')).to.deep.equal({ kernel: kid, status: 'ready' });
    expect((await docker.getImage(target.image).inspect()).Config.Labels[LABELS.committedFrom]).to.equal(kid);

    // the image as an ImageRef's field map (24.09 sends it pickled), with empty registry_conf: etcd's credentials
    const [registry, project] = [REGISTRY, target.repo.split('/')[0]];
    const pushing = await m.client.call(modernMethods.push_image, { registry, project, name: 'kernel-python', tag: 'modern' }, {});
    expect(pushing.canonical).to.equal(target.image);
    const pushed = await ended(pushing.bgtask_id);
    expect(pushed.name, JSON.stringify(pushed.args)).to.equal('bgtask_done');
    expect(await registryDigest(target.repo, 'modern')).to.match(/^sha256:/);

    // a commit to a file is refused at once; so is a name the agent may not use
    expect((await remoteError(m.client.call(modernMethods.commit, kid, 'snapshots', null, 'saved.tar', null))).message).to.include(
      'filename',
    );
    expect((await remoteError(m.client.call(modernMethods.push_image, 'evil.example.com/x/kernel-python:t', {}))).message).to.include(
      'image_allow_list',
    );
    await m.client.call(modernMethods.destroy_kernel, kid, sid, 'user-requested');
  });
  it('a commit the engine fails half way (its data root full) leaves no image nor tag, and the kernel runs on; a start removes what a stop left', async () => {
    const proxy = await dockerProxy();
    const namespace = uniqueName('test');
    const agentId = uniqueName('i-test');
    removeContainersOf(agentId);
    const port = await freePort();
    // what a stop between a commit's two steps leaves: an untagged image with the agent's labels (Docker copies the container's)
    const [cutShort, others] = [await leftStep(agentId), await leftStep(uniqueName('i-other'))];
    const agent = spawnAgent(await loopbackAgentFlags({ namespace, agentId, port }), { DOCKER_HOST: proxy.host });
    await agent.waitFor(/"message":"agent running"/);
    await eventually('the agent to remove the step a stop cut short', async () => !(await hasImage(cutShort)), 30_000, 100);
    expect(await hasImage(others), "another agent's is left alone").to.equal(true);
    const client = new AgentClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 20_000 });
    onCleanup(() => client.close());
    const kid = uniqueName('k');
    removeImagesOfKernelAfterTest(kid);
    const mine = `${TEST_IMAGE_PREFIX}python:${uniqueName('full').toLowerCase()}`;
    onCleanup(() => removeLocal(mine));
    await client.callWithTimeout(90_000, methods.create_kernel, kid, config(TEST_IMAGE_LANG));

    // Docker's commit works; the image made from its layers (the second step) meets a full disk
    proxy.fail(/^POST \S*\/images\/load/, 'write /var/lib/docker/tmp/docker-import-1/repositories: no space left on device');
    const e = await remoteError(client.callWithTimeout(120_000, methods.commit_kernel, kid, mine, true, TEST_LABELS));
    expect(e.remoteType).to.equal('agent.ImageCommitFailed');
    expect(e.message).to.include('no space left on device').and.include('nothing was left behind');
    expect(proxy.failed()).to.equal(1);
    proxy.fail(null);
    expect(await imagesOfKernel(kid)).to.deep.equal([]); // the first step's image is gone too
    expect(await hasImage(mine)).to.equal(false);
    expect((await client.call(methods.get_commit_status, kid)).last?.error).to.include('no space left on device');
    expect(consoleText(await runToEnd(client, kid, 'print(6 * 7)'), 'stdout')).to.equal('42\n');

    // with room again, the same commit works
    const r = await client.callWithTimeout(120_000, methods.commit_kernel, kid, mine, true, TEST_LABELS);
    expect(r.status).to.equal('ready');
    await client.callWithTimeout(60_000, methods.destroy_kernel, kid);
  });
});
