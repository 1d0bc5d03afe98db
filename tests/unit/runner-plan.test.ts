/**
 * Which images get the agent's runner environment and how their code runs
 * (src/containers/runner-env.ts, docs/images.rst "Bring your own image"):
 * the plan read from an image's labels, and the container request of a
 * kernel that takes the environment.
 */
import { expect } from 'chai';
import { injection, runnerPlan, RUNNER_ENV_MOUNT } from '../../src/containers/runner-env.js';
import { containerRequest } from '../../src/containers/launch.js';
import { imageTraits } from '../../src/containers/image-traits.js';

const env = { dir: '/var/lib/compute-agent/runner/0123456789abcdef01234567', digest: '0123456789abcdef01234567', entries: 1, bytes: 1 };

describe('runner plan of an image', () => {
  it('keeps the runner of images that say they carry one, and injects into every other', () => {
    expect(runnerPlan({ 'io.sorna.version': '2' })).to.deep.equal({ baked: true });
    expect(runnerPlan({ 'io.sorna.version': '2', 'io.compute-agent.runner': 'inject' })).to.deep.equal({
      baked: false,
      mode: 'probe',
      python: null,
    });
    expect(runnerPlan({ 'io.compute-agent.runner': 'baked' })).to.deep.equal({ baked: true });
    expect(runnerPlan({})).to.deep.equal({ baked: false, mode: 'probe', python: null });
  });

  it('reads the modern runtime labels: python with its path, another runtime a shell kernel', () => {
    const py = { 'ai.backend.runtime-type': 'python', 'ai.backend.runtime-path': '/opt/conda/bin/python' };
    expect(runnerPlan(py)).to.deep.equal({ baked: false, mode: 'python', python: '/opt/conda/bin/python' });
    expect(runnerPlan({ 'ai.backend.runtime-path': '/usr/local/bin/python' })).to.deep.include({
      mode: 'python',
      python: '/usr/local/bin/python',
    });
    expect(runnerPlan({ 'ai.backend.runtime-type': 'app', 'ai.backend.runtime-path': '/bin/true' })).to.deep.include({
      mode: 'shell',
      python: null,
    });
    expect(runnerPlan({ 'ai.backend.runtime-type': 'python' })).to.deep.include({ mode: 'python', python: null });
  });

  it('says why it cannot take a runtime-path that is no plain absolute path, or a musl distro', () => {
    for (const bad of ['python3', '/usr/bin/python3 -c x', '/a\nb', `/${'x'.repeat(1100)}`])
      expect((runnerPlan({ 'ai.backend.runtime-path': bad }) as { problem?: string }).problem).to.match(
        /is not an absolute path of at most 1024 printable characters/,
      );
    expect(runnerPlan({ 'ai.backend.runtime-path': '/../../etc/shadow' })).to.not.have.property('problem'); // a path inside the container, whatever it says
    expect((runnerPlan({ 'ai.backend.base-distro': 'alpine3.8' }) as { problem?: string }).problem).to.match(
      /built on musl libc .*needs a glibc image/,
    );
  });
});

describe('container request of a kernel with the injected runner', () => {
  const input = (labels: Record<string, string>) => ({
    agentId: 'i-a',
    kernelId: 'k1',
    spec: {
      lang: 'any:1',
      image: 'x/kernel-any:1',
      cpuCount: 1,
      memMiB: 256,
      gpuCount: 0,
      mounts: [],
      environ: { A: '1' },
      cpuSet: null,
      gpuSet: null,
    },
    cpuSet: [0],
    traits: imageTraits(labels),
    scratchDir: '/scratch/k1',
    kernelUid: 1234,
    publishHost: '127.0.0.1',
    security: {
      noNewPrivileges: true,
      capabilities: null,
      seccomp: 'default' as const,
      pidsLimit: 0,
      nofileLimit: 0,
      log: { maxBytes: 1 << 20, maxFiles: 2 },
    },
    createdAt: 1,
    shmMiB: 64,
    runnerEnv: env,
  });

  it('mounts the environment read-only, runs its entrypoint under Docker init, and passes the plan', () => {
    const req = containerRequest(input({ 'ai.backend.runtime-type': 'python', 'ai.backend.runtime-path': '/opt/venv/bin/python3' }));
    expect(req.binds).to.deep.equal(['/scratch/k1:/home/work:rw', `${env.dir}:${RUNNER_ENV_MOUNT}:ro`]);
    expect(req.entrypoint).to.deep.equal([`${RUNNER_ENV_MOUNT}/bin/busybox`, 'sh', `${RUNNER_ENV_MOUNT}/entrypoint.sh`]);
    expect(req.init).to.equal(true);
    expect(req.env).to.deep.equal(['A=1', 'LOCAL_USER_ID=1234', 'CA_USER_PYTHON=/opt/venv/bin/python3']);
    expect(req.labels['io.compute-agent.runner-env']).to.equal(env.digest);
    expect(injection({ baked: false, mode: 'shell', python: null }, env, 7).env).to.deep.equal(['LOCAL_USER_ID=7', 'CA_KERNEL_MODE=shell']);
  });

  it('leaves an image that carries its runner as it was', () => {
    const req = containerRequest(input({ 'io.sorna.version': '2' }));
    expect(req.binds).to.deep.equal(['/scratch/k1:/home/work:rw']);
    expect(req).to.not.have.property('entrypoint');
    expect(req).to.not.have.property('init');
    expect(req.labels).to.not.have.property('io.compute-agent.runner-env');
  });
});
