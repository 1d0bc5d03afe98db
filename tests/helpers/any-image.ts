/**
 * Images without this project's runner for the tests of the injected runner
 * environment (docs/images.rst, "Bring your own image"): the images that
 * deploy/kernels/build-any.sh builds, pushed to a test repository of their
 * own in the local registry and pulled by the agent, or derived locally with
 * other labels; and the node's runner environment (deploy/runner-env/build.sh),
 * checked to hold this checkout's runner files.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import Docker from 'dockerode';
import { findRunnerEnv, type RunnerEnv } from '../../src/containers/runner-env.js';
import { onCleanup, REPO_ROOT, uniqueName } from './env.js';
import { deleteFromRegistry, REGISTRY, removeLocal } from './registry.js';
import { removeImageAfterTest } from './derived-image.js';
import { methods } from '../../src/rpc/methods.js';
import type { AgentClient } from '../../src/rpc/client.js';
import type { RunResult } from '../../src/rpc/results.js';

const docker = new Docker();

/** The images of deploy/kernels/build-any.sh. */
export const ANY_IMAGES = {
  python: 'compute-agent-test/any-python:bookworm',
  shell: 'compute-agent-test/any-shell:bookworm',
  venv: 'compute-agent-test/any-venv:bookworm',
  jupyter: 'compute-agent-test/any-jupyter:bookworm',
  musl: 'compute-agent-test/any-musl:fake',
} as const;

/** The runner environment the test agents take (the default runner_env_root); fails, saying what to run, when it is missing or stale. */
export async function requireRunnerEnv(): Promise<RunnerEnv> {
  const { env, problem } = await findRunnerEnv('/var/lib/compute-agent/runner');
  if (!env) throw new Error(`${problem}: run bash deploy/runner-env/build.sh (deploy/dev/prepare.sh does)`);
  const src = path.join(REPO_ROOT, 'deploy/kernels/python');
  for (const name of (await fs.readdir(src)).filter((n) => n.endsWith('.py'))) {
    const [a, b] = await Promise.all([
      fs.readFile(path.join(src, name)),
      fs.readFile(path.join(env.dir, 'kernel', name)).catch(() => null),
    ]);
    if (!b?.equals(a)) throw new Error(`${env.dir} holds another ${name} than this checkout: run bash deploy/runner-env/build.sh`);
  }
  return env;
}

/** Fails, saying what to run, when an image of build-any.sh is not here. */
export async function requireAnyImage(image: string): Promise<void> {
  if (
    !(await docker
      .getImage(image)
      .inspect()
      .then(
        () => true,
        () => false,
      ))
  )
    throw new Error(
      `the test image ${image} is not here: run bash deploy/kernels/build-any.sh (PREPARE_TESTS=1 deploy/dev/prepare.sh does)`,
    );
}

/**
 * Pushes a local image to a test repository of its own in the registry and
 * removes the local name, so the agent must pull it; returns the
 * image_prefix and lang that name it. Removed locally and from the registry
 * after the test.
 */
export async function pushAnyImage(local: string): Promise<{ prefix: string; lang: string; image: string }> {
  await requireAnyImage(local);
  const repoPath = `${uniqueName('test')}/kernel-any`;
  const tag = local.split('/').pop()!.replace(':', '-');
  const image = `${REGISTRY}/${repoPath}:${tag}`;
  await docker.getImage(local).tag({ repo: `${REGISTRY}/${repoPath}`, tag });
  onCleanup(() => removeLocal(image));
  onCleanup(() => deleteFromRegistry(repoPath, tag));
  const stream = await docker.getImage(image).push({ authconfig: { serveraddress: REGISTRY } });
  let out = '';
  for await (const chunk of stream) out += String(chunk);
  const failed = /"error":"([^"]*)"/.exec(out);
  if (failed) throw new Error(`pushing ${image}: ${failed[1]}`);
  await removeLocal(image);
  return { prefix: `${REGISTRY}/${repoPath.slice(0, repoPath.lastIndexOf('/') + 1)}kernel-`, lang: `any:${tag}`, image };
}

/** A local image made from `base` with other labels (no layer added); lang for the prefix `lablup/kernel-`; removed after the test. */
export async function relabelled(base: string, labels: Record<string, string>): Promise<string> {
  await requireAnyImage(base);
  const tag = uniqueName('any').toLowerCase();
  const c = await docker.createContainer({ Image: base, Cmd: ['true'], Labels: { 'io.compute-agent.test': tag } });
  try {
    await c.commit({
      repo: 'lablup/kernel-any',
      tag,
      changes: Object.entries(labels).map(([k, v]) => `LABEL ${k}=${JSON.stringify(v)}`),
    });
  } finally {
    await c.remove({ force: true });
  }
  removeImageAfterTest(`lablup/kernel-any:${tag}`);
  return `any:${tag}`;
}

/** Runs batch `build` then `exec` and drives `continue` to the end; returns every reply. */
export async function batch(client: AgentClient, id: string, exec: string, build = ''): Promise<RunResult[]> {
  const rs = [await client.callWithTimeout(30_000, methods.execute, 2, id, null, 'batch', '', { build, exec })];
  while (rs.at(-1)!.status !== 'finished')
    rs.push(await client.callWithTimeout(30_000, methods.execute, 2, id, rs[0]!.runId, 'continue', '', {}));
  return rs;
}

/** Whether this checkout's runner runs user code with the image's interpreter (CA_USER_PYTHON, CA_KERNEL_MODE: the runner's side of issue 32). */
export async function runnerTakesUserInterpreter(): Promise<boolean> {
  const src = path.join(REPO_ROOT, 'deploy/kernels/python');
  const files = (await fs.readdir(src)).filter((n) => n.endsWith('.py'));
  return (await Promise.all(files.map((n) => fs.readFile(path.join(src, n), 'utf8')))).some((t) => t.includes('CA_USER_PYTHON'));
}
