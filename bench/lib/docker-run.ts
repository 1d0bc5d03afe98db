/**
 * Kernels started with the docker CLI, outside any agent: the `docker run
 * -d` side of the cold creation figure, and the "direct" kernels of the
 * execute and streaming figures. Those must not be the agent's: since
 * create_kernel waits for the runner's `%ping` the agent keeps a relay on
 * every kernel it made, and a second reader on a runner's output socket
 * would split the records between the two. The container request is the
 * agent's own (containerRequest), so the image, limits, lock-down,
 * environment and home mount are the same by construction; the container
 * carries the run's bench label and is removed at the run's end at the latest.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ContainerSecurity } from '../../src/adapters/docker.js';
import { containerSecurity } from '../../src/config/security.js';
import { defaultSettings } from '../../src/config/settings.js';
import { errorMessage } from '../../src/errors.js';
import { containerRequest, prepareScratch } from '../../src/containers/launch.js';
import { imageTraits, type ImageTraits } from '../../src/containers/image-traits.js';
import { parseKernelConfig } from '../../src/containers/spec.js';
import { BENCH_LABEL, IMAGE_PREFIX, KERNEL_LANG, type BenchEnv } from './env.js';

const run = promisify(execFile);
export const DOCKER = process.env.BENCH_DOCKER ?? 'docker';
const KERNEL_UID = 1000; // the agent's default kernel_uid

/** Parses `docker port` output ("2000/tcp -> 127.0.0.1:49153" lines) into host ports by container port. */
export function parseDockerPort(out: string): Map<number, number> {
  const ports = new Map<number, number>();
  for (const line of out.split('\n')) {
    const m = /^(\d+)\/tcp -> .*:(\d+)\s*$/.exec(line.trim());
    if (m && !ports.has(Number(m[1]))) ports.set(Number(m[1]), Number(m[2]));
  }
  return ports;
}

/** The docker CLI flags of the agent's lock-down (the bench agent runs with the default settings). */
function securityFlags(s: ContainerSecurity): string[] {
  return [
    ...(s.noNewPrivileges ? ['--security-opt', 'no-new-privileges'] : []),
    ...(s.seccomp === 'unconfined' ? ['--security-opt', 'seccomp=unconfined'] : []),
    ...(s.capabilities ? ['--cap-drop', 'ALL', ...s.capabilities.flatMap((c) => ['--cap-add', c])] : []),
    ...(s.pidsLimit > 0 ? ['--pids-limit', String(s.pidsLimit)] : []),
    ...(s.nofileLimit > 0 ? ['--ulimit', `nofile=${s.nofileLimit}:${s.nofileLimit}`] : []),
    ...['--log-driver', 'json-file', '--log-opt', `max-size=${s.log.maxBytes}`, '--log-opt', `max-file=${s.log.maxFiles}`],
  ];
}

/** The kernel image's traits (its io.sorna.* labels); fails with the fix when the image is missing. */
export async function kernelImageTraits(env: BenchEnv): Promise<ImageTraits> {
  const name = `${IMAGE_PREFIX}${KERNEL_LANG}`;
  const image = await env.docker
    .getImage(name)
    .inspect()
    .catch((err: unknown) => {
      throw new Error(`cannot inspect the kernel image ${name} (${errorMessage(err)}): deploy/kernels/build-base.sh builds it`);
    });
  return imageTraits(image.Config?.Labels ?? {});
}

/**
 * Prepares a home under `homes` (untimed, as the agent prepares one) and
 * returns the `docker run` arguments of kernel `id` with `config` on `cpuSet`.
 */
export async function kernelRunArgs(
  env: BenchEnv,
  id: string,
  config: Record<string, unknown>,
  cpuSet: number[],
  homes: string,
  traits: ImageTraits,
): Promise<string[]> {
  const home = path.join(homes, id);
  const spec = parseKernelConfig(config, IMAGE_PREFIX, '/mnt');
  await prepareScratch(home, spec.environ, KERNEL_UID);
  const req = containerRequest({
    agentId: 'none',
    kernelId: id,
    spec,
    cpuSet,
    traits,
    scratchDir: home,
    kernelUid: KERNEL_UID,
    publishHost: '127.0.0.1',
    createdAt: Date.now(),
    security: containerSecurity(defaultSettings()),
    shmMiB: defaultSettings().kernelShmMiB,
  });
  return [
    'run',
    '-d',
    '--name',
    `bench.${id}`,
    '--label',
    `${BENCH_LABEL}=${env.runId}`,
    '--cpuset-cpus',
    req.cpusetCpus,
    '--memory',
    `${req.memoryBytes}b`,
    '--memory-swap',
    `${req.memoryBytes}b`,
    ...(req.shmBytes ? ['--shm-size', `${req.shmBytes}b`] : []),
    ...securityFlags(req.security),
    ...req.env.flatMap((e) => ['-e', e]),
    ...req.binds.flatMap((b) => ['-v', b]),
    ...[2000, 2001, 2002, 2003].flatMap((p) => ['-p', `${req.publishHost}::${p}`]),
    req.image,
  ];
}

/** A kernel container started by the docker CLI: its id and the host ports of the runner's input and output. */
export interface CliKernel {
  container: string;
  host: string;
  inPort: number;
  outPort: number;
}

/** Runs `docker run` with `args`, then `docker port`; the container is removed on a failure here. */
export async function dockerRunKernel(env: BenchEnv, args: string[]): Promise<CliKernel> {
  const container = (await run(DOCKER, args)).stdout.trim();
  try {
    const ports = parseDockerPort((await run(DOCKER, ['port', container])).stdout);
    const [inPort, outPort] = [ports.get(2000), ports.get(2001)];
    if (!inPort || !outPort) throw new Error(`docker port ${container.slice(0, 12)} did not list ports 2000 and 2001`);
    return { container, host: '127.0.0.1', inPort, outPort };
  } catch (err) {
    await removeKernel(env, container);
    throw err;
  }
}

export function removeKernel(env: BenchEnv, container: string): Promise<void> {
  return env.docker
    .getContainer(container)
    .remove({ force: true })
    .then(
      () => undefined,
      () => undefined,
    );
}
