/**
 * Images from the real local registry (deploy/dev/up.sh, 127.0.0.1:5000):
 * create_kernel pulls a missing image with events and progress, one pull per
 * image however many creates wait, auto_pull=never, a tag absent from the
 * registry, the free-space check, a registry that stalls (a TCP proxy of the
 * test's own) against pull_timeout, and the inventory RPCs.
 */
import { Writable } from 'node:stream';
import { expect } from 'chai';
import Docker from 'dockerode';
import { decodeHeartbeatImages } from '../../src/events/receiver.js';
import { methods } from '../../src/rpc/methods.js';
import { createLogger } from '../../src/log.js';
import { eventually, onCleanup, remoteError, requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { sink } from '../helpers/sink.js';
import { expectNothingLeft } from '../helpers/leftovers.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import {
  authRegistry,
  hasImage,
  pushTestImage,
  pushTinyImage,
  removeLocal,
  REGISTRY,
  requireRegistry,
  type PushedImage,
} from '../helpers/registry.js';
import { tcpProxy } from '../helpers/proxy.js';
import { agentctl } from '../helpers/ctl.js';

const config = (lang: string) => ({ lang, limits: { cpu_slot: 1, mem_slot: 256, gpu_slot: 0 }, mounts: [], environ: {} });

/** An agent whose image prefix is the test image's repository, sending events to a sink of its own. */
async function agentFor(prefix: string, settings: Record<string, string> = {}) {
  const s = await sink();
  const a = await startAgent({}, async (ns) => {
    await ns.put('nodes/manager/event_addr').value(s.addr);
    await ns.put('config/agent/image_prefix').value(prefix);
    for (const [k, v] of Object.entries(settings)) await ns.put(`config/agent/${k}`).value(v);
  });
  return { ...a, sink: s };
}

describe('images: pull on demand from the local registry', function () {
  this.timeout(120_000);
  before(async () => {
    await requireEtcd();
    await requireRegistry();
  });

  it('pulls a missing image on create with kernel_pulling and progress; concurrent creates share one pull and the kernels run code', async () => {
    const img = await pushTestImage();
    expect(await hasImage(img.image)).to.equal(false);
    const a = await agentFor(img.prefix, { cpu_overcommit: '4' });
    const ids = [uniqueName('k'), uniqueName('k')];
    const first = ids.map((id) => a.client.callWithTimeout(90_000, methods.create_kernel, id, config(img.lang)));
    // a third create while the pull is under way waits for it and succeeds
    await a.sink.next('kernel_pulling', 0, 30_000);
    const third = uniqueName('k');
    expect(a.agent.imageService!.puller.pulling(img.image)).to.equal(true);
    const late = a.client.callWithTimeout(90_000, methods.create_kernel, third, config(img.lang));
    const infos = await Promise.all([...first, late]);
    expect(infos.map((i) => i.id)).to.deep.equal([...ids, third]);
    expect(a.agent.imageService!.puller.started).to.equal(1);
    const pulling = a.sink.events.filter((e) => e.name === 'kernel_pulling');
    expect(pulling.map((e) => e.args[0]).sort()).to.deep.equal([...ids, third].sort());
    expect(pulling.every((e) => e.args[1] === img.image)).to.equal(true);
    const finished = await a.sink.next('image_pull_finished');
    expect(finished.args).to.deep.equal([img.image]);
    const progress = a.sink.events.filter((e) => e.name === 'image_pull_progress');
    expect(progress.length).to.be.greaterThan(0);
    const last = progress.at(-1)!.args as [string, number, number];
    expect(last[0]).to.equal(img.image);
    expect(last[1]).to.equal(last[2]);
    expect(last[2]).to.be.greaterThan(1_000_000); // the random layer was downloaded
    // at most one progress event per second
    for (let i = 1; i < progress.length - 1; i++) expect(progress[i]!.at - progress[i - 1]!.at).to.be.at.least(900);
    expect(a.sink.events.filter((e) => e.name === 'image_pull_failed')).to.have.length(0);
    const out = consoleText(await runToEnd(a.client, third, 'print(6 * 7)'), 'stdout');
    expect(out).to.equal('42\n');
  });

  it('auto_pull=never gives a clear error naming the image, and pulls nothing', async () => {
    const img = await pushTestImage();
    const a = await agentFor(img.prefix, { auto_pull: 'never' });
    const err = await remoteError(a.client.call(methods.create_kernel, uniqueName('k'), config(img.lang)));
    expect(err.remoteType).to.equal('agent.ImageNotFound');
    expect(err.remoteMessage).to.include(img.image).and.include('auto_pull');
    expect(a.agent.imageService!.puller.started).to.equal(0);
    expect(await hasImage(img.image)).to.equal(false);
    await expectNothingLeft(a);
  });

  it('a tag absent from the registry gives image_pull_failed and a clear create error, and leaves nothing behind', async () => {
    const prefix = `${REGISTRY}/${uniqueName('test')}/kernel-`;
    const a = await agentFor(prefix);
    const err = await remoteError(a.client.call(methods.create_kernel, uniqueName('k'), config('python:no-such-tag')));
    expect(err.remoteType).to.equal('agent.ImageNotFound');
    expect(err.remoteMessage).to.include(`${prefix}python:no-such-tag is not on this node and cannot be pulled`).and.include('has no');
    const failed = await a.sink.next('image_pull_failed');
    expect(failed.args[0]).to.equal(`${prefix}python:no-such-tag`);
    expect(String(failed.args[1])).to.include('has no');
    await expectNothingLeft(a);
    expect(await a.client.call(methods.ping, 'still here')).to.equal('still here');
  });

  it('refuses a pull that does not fit the free space, naming the numbers', async () => {
    const img = await pushTestImage();
    const a = await agentFor(img.prefix, { pull_space_margin: String(2 ** 50) });
    const err = await remoteError(a.client.call(methods.create_kernel, uniqueName('k'), config(img.lang)));
    expect(err.remoteType).to.equal('agent.ImagePullFailed');
    expect(err.remoteMessage).to.match(
      /not enough free space to pull .* has .* free, and the pull needs 2 x .* compressed \+ .* margin = /,
    );
    expect(err.remoteMessage)
      .to.include('+ 1048576.00 GiB margin')
      .and.match(/\(\d+ bytes\) free/);
    expect(a.agent.imageService!.puller.started).to.equal(0);
    expect(await hasImage(img.image)).to.equal(false);
    await expectNothingLeft(a);
  });

  it('aborts a pull past pull_timeout through a stalling registry; every waiter gets the timeout and the agent keeps serving', async () => {
    const img = await pushTestImage({ noiseBytes: 4_000_000 });
    const [host, port] = REGISTRY.split(':');
    const proxy = await tcpProxy({ host: host!, port: Number(port) }, { stallAfter: 64 * 1024 });
    const prefix = `127.0.0.1:${proxy.port}/${img.repo.slice(0, img.repo.lastIndexOf('/') + 1)}kernel-`;
    const a = await agentFor(prefix, { pull_timeout: '3', cpu_overcommit: '4' });
    const creates = [uniqueName('k'), uniqueName('k')].map((id) =>
      remoteError(a.client.callWithTimeout(30_000, methods.create_kernel, id, config(img.lang))),
    );
    const errs = await Promise.all(creates);
    for (const e of errs) {
      expect(e.remoteType).to.equal('agent.ImagePullFailed');
      expect(e.remoteMessage).to.include('pull_timeout (3 s)').and.include(`${prefix}${img.lang}`);
    }
    expect(a.agent.imageService!.puller.started).to.equal(1);
    expect(proxy.connections()).to.be.greaterThan(0); // Docker really went through the stalling proxy
    const failed = await a.sink.next('image_pull_failed');
    expect(String(failed.args[1])).to.include('pull_timeout');
    expect(a.agent.imageService!.listPulls()).to.deep.equal([]);
    expect(await a.client.call(methods.ping, 'alive')).to.equal('alive');
    await expectNothingLeft(a);
  });
});

describe('images: pull bounds and auto_pull=digest', function () {
  this.timeout(120_000);
  before(async () => {
    await requireEtcd();
    await requireRegistry();
  });

  it('runs at most pull_concurrency pulls at once; the others wait queued', async () => {
    const base = uniqueName('test');
    const imgs = [await pushTestImage({ repoBase: base, tag: 'a' }), await pushTestImage({ repoBase: base, tag: 'b' })];
    const [host, port] = REGISTRY.split(':');
    const proxy = await tcpProxy({ host: host!, port: Number(port) }, { stallAfter: 64 * 1024 });
    const prefix = `127.0.0.1:${proxy.port}/${base}/kernel-`;
    const a = await agentFor(prefix, { pull_concurrency: '1', pull_timeout: '4' });
    const pulls = imgs.map((i) => remoteError(a.client.callWithTimeout(30_000, methods.pull_image, i.lang)));
    const states = await eventually('two pulls listed', async () => {
      const l = await a.client.call(methods.list_pulls);
      return l.length === 2 && l.some((p) => p.state === 'pulling') ? l : null;
    });
    expect(states!.map((p) => p.state).sort()).to.deep.equal(['pulling', 'queued']);
    const errs = await Promise.all(pulls);
    for (const e of errs) expect(e.remoteMessage).to.include('pull_timeout (4 s)');
    expect(a.agent.imageService!.puller.peak).to.equal(1);
  });

  it('auto_pull=digest pulls again when the registry has a new image for the tag, and not when it is the same', async () => {
    const base = uniqueName('test');
    const first = await pushTestImage({ repoBase: base });
    const a = await agentFor(first.prefix, { auto_pull: 'digest', cpu_overcommit: '4' });
    const ids = [uniqueName('k'), uniqueName('k'), uniqueName('k')];
    await a.client.callWithTimeout(60_000, methods.create_kernel, ids[0]!, config(first.lang));
    expect(a.agent.imageService!.puller.started).to.equal(1);
    await a.client.callWithTimeout(60_000, methods.create_kernel, ids[1]!, config(first.lang));
    expect(a.agent.imageService!.puller.started).to.equal(1); // same digest: no pull
    const old = (await a.client.call(methods.list_images)).find((r) => r.image === first.image)!;
    onCleanup(() =>
      new Docker()
        .getImage(old.id)
        .remove({ force: true })
        .catch(() => undefined),
    );
    // new content under the same tag in the registry; here the tag goes back to the old image
    await pushTestImage({ repoBase: base });
    await new Docker().getImage(old.id).tag({ repo: first.image.slice(0, first.image.lastIndexOf(':')), tag: first.tag });
    await a.client.callWithTimeout(60_000, methods.create_kernel, ids[2]!, config(first.lang));
    expect(a.agent.imageService!.puller.started).to.equal(2);
    const now = (await a.client.call(methods.list_images)).find((r) => r.image === first.image)!;
    expect(now.id).to.not.equal(old.id);
    expect(now.digest).to.not.equal(old.digest);
    for (const id of ids) await a.client.call(methods.destroy_kernel, id);
  });
});

describe('images: inventory RPCs', function () {
  this.timeout(120_000);
  before(async () => {
    await requireEtcd();
    await requireRegistry();
  });

  let img: PushedImage;

  it('pull_image pulls, list_images counts users, delete_image refuses an image in use and removes an idle one', async () => {
    img = await pushTestImage();
    const a = await agentFor(img.prefix);
    const pulled = await a.client.callWithTimeout(90_000, methods.pull_image, img.lang);
    expect(pulled).to.deep.equal({ image: img.image, pulled: true });
    expect(await a.client.call(methods.pull_image, img.lang)).to.deep.equal({ image: img.image, pulled: false });
    let list = await a.client.call(methods.list_images);
    const row = list.find((r) => r.image === img.image)!;
    expect(row).to.include({ lang: img.lang, tag: img.tag, kernels: 0, pooled: 0 });
    expect(row.digest).to.match(/^sha256:[0-9a-f]{64}$/);
    const id = uniqueName('k');
    await a.client.callWithTimeout(60_000, methods.create_kernel, id, config(img.lang));
    list = await a.client.call(methods.list_images);
    expect(list.find((r) => r.image === img.image)).to.include({ kernels: 1 });
    for (const force of [false, true]) {
      const e = await remoteError(a.client.call(methods.delete_image, img.lang, force));
      expect(e.remoteType).to.equal('agent.ImageInUse');
      expect(e.remoteMessage).to.include('1 kernel');
    }
    const purged = await a.client.call(methods.purge_images, [img.lang]);
    expect(purged).to.have.length(1);
    expect(purged[0]).to.include({ image: img.image, removed: false });
    await a.client.call(methods.destroy_kernel, id);
    expect(await a.client.call(methods.delete_image, img.lang, true)).to.deep.equal({ image: img.image, removed: true });
    expect(await hasImage(img.image)).to.equal(false);
    const gone = await remoteError(a.client.call(methods.delete_image, img.lang));
    expect(gone.remoteType).to.equal('agent.ImageNotFound');
  });

  it('a bad name is a ParametersError for every image method', async () => {
    const a = await startAgent();
    for (const call of [
      a.client.call(methods.pull_image, '../etc:x'),
      a.client.call(methods.delete_image, 'UPPER:case'),
      a.client.call(methods.purge_images, ['python:ok', 'bad name']),
    ]) {
      const e = await remoteError(call);
      expect(e.remoteType).to.equal('aiozmq.rpc.base.ParametersError');
    }
    expect(await hasImage(`lablup/kernel-${TEST_IMAGE_LANG}`)).to.equal(true);
  });
});

describe('images: agentctl images', function () {
  this.timeout(120_000);
  before(async () => {
    await requireEtcd();
    await requireRegistry();
  });

  it('pull shows progress lines when stdout is not a TTY, list --json shows the image, rm removes it', async () => {
    const img = await pushTestImage({ noiseBytes: 20_000_000 });
    const a = await agentFor(img.prefix);
    const ctl = (...args: string[]) => agentctl(['--agent', `tcp://127.0.0.1:${a.port}`, ...args], { timeoutMs: 90_000 });
    const pulled = await ctl('images', 'pull', img.lang);
    expect(pulled.code, pulled.stderr).to.equal(0);
    expect(pulled.stdout).to.match(new RegExp(`pulled ${img.image.replace(/[.]/g, '\\.')}\\n$`));
    for (const line of pulled.stdout.trim().split('\n').slice(0, -1))
      expect(line).to.match(/^pulling \S+: (\d+% \S+ of \S+, \S+\/s|queued behind other pulls)$/);
    const again = await ctl('images', 'pull', img.lang, '--json');
    expect(JSON.parse(again.stdout)).to.deep.equal({ image: img.image, pulled: false });
    const list = await ctl('images', 'list', '--json');
    const rows = JSON.parse(list.stdout) as Array<{ image: string; kernels: number }>;
    expect(rows.find((r) => r.image === img.image)).to.include({ kernels: 0 });
    const table = await ctl('images');
    expect(table.stdout).to.match(/^LANG\s+IMAGE\s+ID\s+SIZE/);
    expect(table.stdout).to.include(img.image);
    const rm = await ctl('images', 'rm', img.lang);
    expect(rm.code, rm.stderr).to.equal(0);
    expect(rm.stdout).to.equal(`removed ${img.image}\n`);
    expect(await hasImage(img.image)).to.equal(false);
    const rmAgain = await ctl('images', 'rm', img.lang, '--json');
    expect(rmAgain.code).to.equal(1);
    expect((JSON.parse(rmAgain.stdout) as Array<{ removed: boolean; error: string }>)[0]).to.include({ removed: false });
  });
});

describe('images: agentctl run of an image not here yet', function () {
  this.timeout(120_000);
  before(async () => {
    await requireEtcd();
    await requireRegistry();
  });

  it('waits for the pull, showing only progress lines on stderr, then runs the code', async () => {
    const img = await pushTestImage({ noiseBytes: 20_000_000 });
    const a = await agentFor(img.prefix);
    const r = await agentctl(['--agent', `tcp://127.0.0.1:${a.port}`, 'run', img.lang, 'print(6*7)'], { timeoutMs: 90_000 });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal('42\n');
    for (const line of r.stderr.split('\n').filter(Boolean)) expect(line).to.match(/^pulling \S+: /);
    expect(await hasImage(img.image)).to.equal(true);
  });
});

describe('images: heartbeat list', function () {
  this.timeout(60_000);
  before(requireEtcd);

  it('is rebuilt only when Docker reports an image change, not on every beat', async () => {
    const s = await sink();
    const a = await startAgent({}, async (ns) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
      await ns.put('config/agent/heartbeat_interval').value('0.2');
    });
    const inv = a.agent.imageService!.inventory;
    await eventually('10 heartbeats', () => s.events.filter((e) => e.name === 'instance_heartbeat').length >= 10);
    const beats = s.events.filter((e) => e.name === 'instance_heartbeat').length;
    // other image events on this shared engine may cause a rebuild or two; every beat would be one each
    expect(inv.rebuilds).to.be.lessThan(beats / 2);
    const lang = `${uniqueName('hbtest')}:1`;
    const tag = `lablup/kernel-${lang}`;
    await new Docker().getImage(`lablup/kernel-${TEST_IMAGE_LANG}`).tag({ repo: tag.split(':')[0]!, tag: '1' });
    onCleanup(() => removeLocal(tag));
    const imagesOf = (e: { args: unknown[] }) => decodeHeartbeatImages((e.args[0] as { images: unknown }).images).map(([n]) => n);
    await eventually('a heartbeat with the new tag', () =>
      s.events.filter((e) => e.name === 'instance_heartbeat').some((e) => imagesOf(e).includes(lang)),
    );
    await removeLocal(tag);
    const after = s.events.length;
    await eventually('a heartbeat without the removed tag', () =>
      s.events.slice(after).some((e) => e.name === 'instance_heartbeat' && !imagesOf(e).includes(lang)),
    );
  });
});

describe('images: registry credentials', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('pulls from a registry that needs a login with the credentials from etcd, and never logs or sends the password', async () => {
    const password = `pw-${uniqueName('secret')}`;
    const reg = await authRegistry('agent', password);
    const img = await pushTinyImage({ registry: reg.addr, auth: { username: 'agent', password } }); // the login is what is tested, not the size
    const lines: string[] = [];
    const log = createLogger({
      level: 'debug',
      format: 'json',
      stream: new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }),
    });
    const s = await sink();
    // without credentials: refused, with a message that says where they go
    const anon = await startAgent(
      {},
      async (ns) => {
        await ns.put('config/agent/image_prefix').value(img.prefix);
      },
      log,
    );
    const refused = await remoteError(anon.client.call(methods.create_kernel, uniqueName('k'), config(img.lang)));
    expect(refused.remoteType).to.equal('agent.ImageNotFound');
    expect(refused.remoteMessage).to.include(`config/docker/registry/${reg.addr}/username`);
    const a = await startAgent(
      {},
      async (ns) => {
        await ns.put('nodes/manager/event_addr').value(s.addr);
        await ns.put('config/agent/image_prefix').value(img.prefix);
        await ns.put(`config/docker/registry/${reg.addr}/username`).value('agent');
        await ns.put(`config/docker/registry/${reg.addr}/password`).value(password);
      },
      log,
    );
    const id = uniqueName('k');
    await a.client.callWithTimeout(90_000, methods.create_kernel, id, config(img.lang));
    expect(await hasImage(img.image)).to.equal(true);
    await s.next('image_pull_finished');
    expect(lines.length).to.be.greaterThan(10);
    expect(lines.filter((l) => l.includes(password))).to.deep.equal([]);
    expect(s.events.filter((e) => JSON.stringify(e.args).includes(password))).to.deep.equal([]);
  });
});
