/** Kernel images made for one test from the test's kernel image (service ports, app definitions). */
import { expect } from 'chai';
import Docker from 'dockerode';
import { onCleanup, TEST_IMAGE_LANG, uniqueName } from './env.js';

const docker = new Docker();

/**
 * Makes an image from the test's kernel image with a service-port label and
 * app definitions (a `docker commit`, no registry); removed after the test.
 */
/** Removes the image after the test, even when it fails (an image already gone is fine). */
export function removeImageAfterTest(image: string): void {
  onCleanup(() =>
    docker
      .getImage(image)
      .remove({ force: true })
      .then(
        () => undefined,
        () => undefined,
      ),
  );
}

export async function derivedImage(label: string, defs: Record<string, unknown>): Promise<string> {
  const tag = uniqueName('svc-test').toLowerCase();
  const base = `lablup/kernel-${TEST_IMAGE_LANG}`;
  const script = Object.entries(defs)
    .map(([name, d]) => `printf '%s' '${JSON.stringify(d)}' > /opt/kernel/service-defs/${name}.json`)
    .join(' && ');
  const c = await docker.createContainer({
    Image: base,
    Entrypoint: ['/bin/sh', '-c'],
    Cmd: [`mkdir -p /opt/kernel/service-defs && ${script || 'true'}`],
    User: 'root',
    Labels: { 'io.compute-agent.test': tag },
  });
  try {
    await c.start();
    const r = (await c.wait()) as { StatusCode: number };
    expect(r.StatusCode).to.equal(0);
    const baseInfo = await docker.getImage(base).inspect();
    await c.commit({
      repo: 'lablup/kernel-python',
      tag,
      changes: [
        `LABEL ai.backend.service-ports="${label}"`,
        `ENTRYPOINT ${JSON.stringify(baseInfo.Config.Entrypoint)}`,
        `CMD ${JSON.stringify(baseInfo.Config.Cmd)}`,
      ],
    });
  } finally {
    await c.remove({ force: true });
  }
  removeImageAfterTest(`lablup/kernel-python:${tag}`);
  return `python:${tag}`;
}
