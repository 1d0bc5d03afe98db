/**
 * Figure 7, pulling a kernel image from the local registry (deploy/dev/up.sh,
 * 127.0.0.1:5000) from a cold cache: the agent's `pull_image` (its queue,
 * manifest read, free-space check and progress aggregation included) against
 * `docker pull` (the real docker CLI) of the same image, interleaved. The
 * image is the kernel image's file system plus 1 MB of random bytes,
 * imported as one layer of its own (so no layer of it is on the node), pushed
 * once; after each round it is removed locally, so every pull downloads and
 * unpacks all of it. Removal is not timed. The short form (CI) pulls an
 * image of the random bytes alone, which runs every step of both sides in
 * a fraction of the time.
 */
import { execFile } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { errorMessage } from '../../src/errors.js';
import { methods } from '../../src/rpc/methods.js';
import type { Figure, Side } from '../harness.js';
import { BENCH_LABEL, IMAGE_PREFIX, KERNEL_LANG, type BenchEnv } from '../lib/env.js';

const run = promisify(execFile);
const DOCKER = process.env.BENCH_DOCKER ?? 'docker';
const REGISTRY = process.env.BENCH_REGISTRY ?? '127.0.0.1:5000';

/** Removes the image (ours: made by this run) so that the next pull is cold. */
async function removeImage(env: BenchEnv, image: string): Promise<void> {
  const info = await env.docker
    .getImage(image)
    .inspect()
    .catch(() => null);
  if (info) await env.docker.getImage(info.Id).remove({ force: true });
}

/** The short form's image: a layer of 1 MB of random bytes and nothing else. */
async function importNoise(env: BenchEnv, image: string): Promise<void> {
  const dir = await env.tempDir('bench-pull');
  await run('sh', [
    '-c',
    `mkdir -p "${dir}/opt" && head -c 1000000 /dev/urandom > "${dir}/opt/bench-noise" && tar -C "${dir}" -c . | ${DOCKER} import - ${image}`,
  ]);
}

/** Makes the run's image: the kernel image's file system plus random bytes (only the bytes, short), one layer, pushed to the registry and removed here. */
async function makeImage(env: BenchEnv, image: string, short: boolean): Promise<void> {
  env.onClose(async () => {
    await removeImage(env, image).catch(() => undefined);
    const [repo, tag] = [image.slice(REGISTRY.length + 1, image.lastIndexOf(':')), image.slice(image.lastIndexOf(':') + 1)];
    const head = await fetch(`http://${REGISTRY}/v2/${repo}/manifests/${tag}`, {
      method: 'HEAD',
      headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' },
    });
    const digest = head.headers.get('docker-content-digest');
    if (digest) await fetch(`http://${REGISTRY}/v2/${repo}/manifests/${digest}`, { method: 'DELETE' });
  });
  if (short) await importNoise(env, image);
  else await exportKernelImage(env, image);
  await run(DOCKER, ['push', image]);
  await removeImage(env, image);
}

/** The kernel image's file system plus 1 MB of random bytes, imported as one layer. */
async function exportKernelImage(env: BenchEnv, image: string): Promise<void> {
  const base = `${IMAGE_PREFIX}${KERNEL_LANG}`;
  const c = await env.docker
    .createContainer({
      Image: base,
      Entrypoint: ['/bin/sh', '-c'],
      Cmd: ['head -c 1000000 /dev/urandom > /opt/bench-noise'],
      Labels: { [BENCH_LABEL]: env.runId },
    })
    .catch((err: unknown) => {
      throw new Error(`cannot use the kernel image ${base} (${errorMessage(err)}): deploy/kernels/build-base.sh builds it`);
    });
  try {
    await c.start();
    await c.wait();
    // docker export | docker import: one layer that no image on the node shares
    await run('sh', ['-c', `${DOCKER} export ${c.id} | ${DOCKER} import - ${image}`], { maxBuffer: 1024 * 1024 });
  } finally {
    await c.remove({ force: true });
  }
}

function agentSide(env: BenchEnv, prefix: string, lang: string, image: string): Side {
  return {
    label: 'agent pull_image',
    async measure() {
      const { client } = await env.agent({ name: 'pull', settings: { image_prefix: prefix }, args: [] });
      const t0 = performance.now();
      const r = await client.callWithTimeout(600_000, methods.pull_image, lang);
      const ms = performance.now() - t0;
      if (!r.pulled) throw new Error(`${image} was already here: the cache was not cold`);
      await removeImage(env, image);
      return { pull: [ms] };
    },
  };
}

function cliSide(env: BenchEnv, image: string): Side {
  return {
    label: 'docker pull',
    async measure() {
      const t0 = performance.now();
      await run(DOCKER, ['pull', '--quiet', image]);
      const ms = performance.now() - t0;
      await removeImage(env, image);
      return { pull: [ms] };
    },
  };
}

export const imagePullFigure: Figure = {
  name: 'image-pull',
  title: 'Pulling a kernel image from the local registry: agent pull_image vs docker pull',
  measures: 'milliseconds from the request (an RPC, or starting the docker CLI) until the image is on the node, from a cold cache',
  target: 'the agent within 10 % of the docker CLI (median ratio at most 1.1)',
  sides: ['agent pull_image', 'docker pull'],
  metrics: [{ key: 'pull', label: 'pull from a cold cache', unit: 'ms', better: 'lower' }],
  rounds: { full: 10, short: 1 },
  async prepare(env, settings) {
    const prefix = `${REGISTRY}/${env.runId}/kernel-`;
    const lang = 'python:bench';
    const image = prefix + lang;
    await makeImage(env, image, settings.short);
    await env.agent({ name: 'pull', settings: { image_prefix: prefix }, args: [] });
    return { a: agentSide(env, prefix, lang, image), b: cliSide(env, image), close: async () => {} };
  },
  verdict(m) {
    const p = m.pull!;
    return {
      met: p.ratio <= 1.1,
      detail: `agent/CLI median ${p.ratio.toFixed(2)} (target <= 1.1); medians ${p.a.median.toFixed(0)} vs ${p.b.median.toFixed(0)} ms`,
    };
  },
};
