/**
 * Image collection under disk pressure (src/images/gc.ts), for real: images
 * of the test's own pushed to the local registry (127.0.0.1:5000) and pulled
 * by the agent, the watermarks set from the real usage of Docker's data root
 * so that a periodic check collects (image_gc_high just under the usage,
 * image_gc_low 0, which removing the test's images cannot reach, so every
 * image that may go goes). The unused ones go least recently used first (an
 * image whose tag a newer one took, left with its digest name only, first of
 * all: it has no recorded use); the
 * one a running kernel uses, the one a stopped container of another program
 * uses and the one on the prepull list stay; `agentctl images gc --dry-run`
 * lists the same order first.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import { methods } from '../../src/rpc/methods.js';
import type { ImageGcResult } from '../../src/rpc/results.js';
import { onCleanup, requireEtcd, startAgent, uniqueName } from '../helpers/env.js';
import { sink } from '../helpers/sink.js';
import { hasImage, pushTestImage, REGISTRY, requireRegistry } from '../helpers/registry.js';
import { agentctl } from '../helpers/ctl.js';
import { parsePrometheus, sample } from '../helpers/prometheus.js';

const docker = new Docker();
const config = (lang: string) => ({ lang, limits: { cpu_slot: 1, mem_slot: 256, gpu_slot: 0 }, mounts: [], environ: {} });

/** The percent used of the file system of Docker's data root, as df (and the agent) count it. */
async function dataRootUsage(): Promise<number> {
  const root = ((await docker.info()) as { DockerRootDir: string }).DockerRootDir;
  const s = await fs.statfs(root);
  const used = (s.blocks - s.bfree) * s.bsize;
  return (100 * used) / (used + s.bavail * s.bsize);
}

describe('images: collection under disk pressure', function () {
  this.timeout(180_000);
  before(async () => {
    await requireEtcd();
    await requireRegistry();
  });

  it('removes unused kernel images least recently used first and keeps those in use, of another program or on the prepull list', async () => {
    const base = uniqueName('test');
    const names = ['old', 'a', 'b', 'c', 'run', 'stopped', 'pre'];
    const pushed = await Promise.all(names.map((tag) => pushTestImage({ repoBase: base, tag, noiseBytes: 64 * 1024 })));
    const img = Object.fromEntries(names.map((n, i) => [n, pushed[i]!]));
    const prefix = img.a!.prefix;
    expect(prefix).to.equal(`${REGISTRY}/${base}/kernel-`);
    const s = await sink();
    const a = await startAgent({}, async (ns) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
      await ns.put('config/agent/image_prefix').value(prefix);
      await ns.put('config/agent/prepull').value(img.pre!.lang);
      await ns.put('config/agent/image_gc_interval').value('1');
      await ns.put('config/agent/image_gc_low').value('0');
    });
    const images = a.agent.imageService!;
    // the agent pulls each image: the prepull list by itself, the rest as asked, old then a to c in this order
    await s.next('image_pull_finished', 0, 60_000);
    for (const n of ['run', 'stopped', 'old', 'a', 'b', 'c']) {
      const r = await a.client.callWithTimeout(60_000, methods.pull_image, img[n]!.lang);
      expect(r, n).to.deep.equal({ image: img[n]!.image, pulled: true });
    }
    // a newer image takes the tag old (made here and pushed, as a build host would): the one pulled is left with its digest name only
    const oldId = (await docker.getImage(img.old!.image).inspect()).Id;
    await pushTestImage({ repoBase: base, tag: 'old', noiseBytes: 64 * 1024, keepLocal: true });
    const replaced = await docker.getImage(oldId).inspect();
    expect(replaced.RepoTags ?? []).to.deep.equal([]);
    const oldDigest = replaced.RepoDigests![0]!;
    await a.client.callWithTimeout(90_000, methods.create_kernel, uniqueName('k'), config(img.run!.lang));
    const other = await docker.createContainer({
      Image: img.stopped!.image,
      Entrypoint: ['/bin/true'],
      Labels: { 'io.compute-agent.test': uniqueName('gc') },
    });
    onCleanup(() => other.remove({ force: true }).catch(() => undefined));
    await other.start();
    await other.wait();
    // b is used again (a pull_image of an image already here is a use): the order of last use is a, c, b
    expect(await a.client.call(methods.pull_image, img.b!.lang)).to.deep.equal({ image: img.b!.image, pulled: false });

    const dry = await agentctl(['--agent', `tcp://127.0.0.1:${a.port}`, 'images', 'gc', '--dry-run', '--json'], { timeoutMs: 60_000 });
    expect(dry.code, dry.stderr).to.equal(0);
    const plan = JSON.parse(dry.stdout) as ImageGcResult;
    expect(plan).to.include({ dry_run: true, ran: true, low_pct: 0 });
    const order = [oldDigest, img.old!.image, img.a!.image, img.c!.image, img.b!.image];
    expect(plan.removed.map((r) => r.image)).to.deep.equal(order);
    expect(plan.removed[0]).to.include({ id: oldId, last_used: null });
    expect(plan.removed.every((r, i, all) => i < 2 || r.last_used! >= all[i - 1]!.last_used!)).to.equal(true);
    const reasons = Object.fromEntries(plan.kept.map((k) => [k.image, k.reason]));
    expect(reasons).to.deep.equal({
      [img.run!.image]: 'a container uses it (running or stopped)',
      [img.stopped!.image]: 'a container uses it (running or stopped)',
      [img.pre!.image]: 'on the prepull list',
    });
    for (const n of names) expect(await hasImage(img[n]!.image), `${n} after the dry run`).to.equal(true);

    // Now the periodic check finds the usage over image_gc_high.
    const usage = await dataRootUsage();
    expect(usage, 'the data root is too empty for this test').to.be.greaterThan(3);
    const t0 = Date.now();
    await a.etcd.put('config/agent/image_gc_high').value(String(Math.floor(usage) - 2));
    const removed = [];
    for (let nth = 1; nth <= order.length; nth++) removed.push(await s.next('image_removed', t0, 60_000, nth));
    expect(removed.map((e) => e.args[0])).to.deep.equal(order);
    expect(removed[0]!.args.slice(1, 3)).to.deep.equal([oldId, null]);
    for (const e of removed.slice(1)) {
      const [, id, lastUsed, pct] = e.args as [string, string, number, number];
      expect(id).to.match(/^sha256:[0-9a-f]{64}$/);
      expect(lastUsed).to.be.within(t0 / 1000 - 600, t0 / 1000);
      expect(pct).to.be.greaterThan(Math.floor(usage) - 3);
    }
    expect(await hasImage(oldId)).to.equal(false);
    for (const n of ['old', 'a', 'b', 'c']) expect(await hasImage(img[n]!.image), n).to.equal(false);
    for (const n of ['run', 'stopped', 'pre']) expect(await hasImage(img[n]!.image), n).to.equal(true);
    expect(images.gc.removedTotal).to.equal(order.length);
    const m = parsePrometheus(await a.agent.agentMetrics!.registry.metrics());
    expect(sample(m, 'compute_agent_images_collected_total', {})).to.equal(order.length);
    // the book of last uses forgot the removed names and keeps the others, on disk
    await images.book.flush();
    const book = JSON.parse(await fs.readFile(path.join(a.agent.options.scratchRoot, '.image-use.json'), 'utf8')) as Record<string, number>;
    expect(Object.keys(book).sort()).to.deep.equal([img.pre!.image, img.run!.image, img.stopped!.image].sort());
    // a pass asked for now finds nothing more to remove, and says what stays and why
    const again = await agentctl(['--agent', `tcp://127.0.0.1:${a.port}`, 'images', 'gc'], { timeoutMs: 60_000 });
    expect(again.code, again.stderr).to.equal(0);
    const lines = again.stdout.trim().split('\n');
    expect(lines[0]).to.match(/^\/\S+: [\d.]+% used \(high \d+%, low 0%\), [\d.]+% after$/);
    expect(lines[1]).to.match(/^REMOVED\s+ID\s+SIZE\s+LAST USED$/);
    expect(lines.slice(2).sort()).to.deep.equal(
      [
        `kept ${img.pre!.image}: on the prepull list`,
        `kept ${img.run!.image}: a container uses it (running or stopped)`,
        `kept ${img.stopped!.image}: a container uses it (running or stopped)`,
      ].sort(),
    );
  });
});
