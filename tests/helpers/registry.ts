/**
 * The local image registry of the tests (started by deploy/dev/up.sh on
 * 127.0.0.1:5000): each test pushes an image of its own under a repository
 * of its own, made from the shared kernel image plus a small layer of random
 * bytes (so a pull really downloads something), and removes it locally and
 * from the registry afterwards. The shared image is never changed.
 */
import Docker from 'dockerode';
import { onCleanup, reachable, TEST_IMAGE_LANG, TEST_IMAGE_PREFIX, uniqueName } from './env.js';

export const REGISTRY = process.env.TEST_REGISTRY ?? '127.0.0.1:5000';
const docker = new Docker();

/** Fails with a clear message when the local registry does not answer. */
export async function requireRegistry(): Promise<void> {
  const [host, port] = REGISTRY.split(':');
  if (!(await reachable(host!, Number(port)))) throw new Error(`the image registry does not answer at ${REGISTRY}: run deploy/dev/up.sh first`);
}

/** An image of the test's own in the registry: `prefix` + `lang` names it. */
export interface PushedImage {
  prefix: string;
  lang: string;
  image: string;
  repo: string;
  tag: string;
}

async function drain(stream: NodeJS.ReadableStream): Promise<void> {
  let buffered = '';
  for await (const chunk of stream) buffered += chunk.toString();
  const err = buffered.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { error?: string }).find((m) => m.error);
  if (err) throw new Error(err.error);
}

/** The registry's digest of a tag, or null when it has none. */
export async function registryDigest(repo: string, tag: string, registry = REGISTRY): Promise<string | null> {
  const res = await fetch(`http://${registry}/v2/${repo}/manifests/${tag}`, { method: 'HEAD', headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
  return res.status === 200 ? res.headers.get('docker-content-digest') : null;
}

/**
 * Makes `<registry>/test-<random>/kernel-<lang name>:<tag>` from the shared
 * image with `noiseBytes` of random data on top, pushes it, and (unless
 * `keepLocal`) removes it locally so that the next use must pull it. After
 * the test the local image and the registry's manifest are removed.
 */
export async function pushTestImage(o: { noiseBytes?: number; keepLocal?: boolean; tag?: string; repoBase?: string } = {}): Promise<PushedImage> {
  const [name, baseTag] = TEST_IMAGE_LANG.split(':') as [string, string];
  const tag = o.tag ?? baseTag;
  const repoPath = `${o.repoBase ?? uniqueName('test')}/kernel-${name}`;
  const repo = `${REGISTRY}/${repoPath}`;
  const image = `${repo}:${tag}`;
  const base = await docker.getImage(TEST_IMAGE_PREFIX + TEST_IMAGE_LANG).inspect();
  const c = await docker.createContainer({
    Image: base.Id,
    Entrypoint: ['/bin/sh', '-c'],
    Cmd: [`head -c ${o.noiseBytes ?? 2_000_000} /dev/urandom > /opt/noise-${uniqueName('n')}`],
    Labels: { 'io.compute-agent.test': 'registry' },
  });
  try {
    await c.start();
    await c.wait();
    const changes = [`ENTRYPOINT ${JSON.stringify(base.Config.Entrypoint ?? [])}`, `CMD ${JSON.stringify(base.Config.Cmd ?? [])}`];
    await c.commit({ repo, tag, changes });
  } finally {
    await c.remove({ force: true });
  }
  onCleanup(() => removeLocal(image));
  onCleanup(() => deleteFromRegistry(repoPath, tag));
  await drain(await docker.getImage(image).push({ authconfig: { serveraddress: REGISTRY } }));
  if (!o.keepLocal) await removeLocal(image);
  return { prefix: `${repo.slice(0, repo.lastIndexOf('/') + 1)}kernel-`, lang: `${name}:${tag}`, image, repo: repoPath, tag };
}

/** Removes a test image locally (its own tag only; a shared image keeps its other names). */
export async function removeLocal(image: string): Promise<void> {
  await docker.getImage(image).remove({ force: true }).catch((err: { statusCode?: number }) => {
    if (err.statusCode !== 404) throw err;
  });
}

/** Deletes a tag's manifest from the registry (delete is enabled in deploy/dev/registry/config.yml). */
export async function deleteFromRegistry(repo: string, tag: string): Promise<void> {
  const digest = await registryDigest(repo, tag);
  if (digest) await fetch(`http://${REGISTRY}/v2/${repo}/manifests/${digest}`, { method: 'DELETE' });
}

/** Whether an image is in the local Docker. */
export async function hasImage(image: string): Promise<boolean> {
  return docker.getImage(image).inspect().then(() => true, () => false);
}
