/**
 * The local image registry of the tests (started by deploy/dev/up.sh on
 * 127.0.0.1:5000): each test pushes an image of its own under a repository
 * of its own, made from the shared kernel image plus a small layer of random
 * bytes (so a pull really downloads something), and removes it locally and
 * from the registry afterwards. The shared image is never changed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { eventually, freePort, onCleanup, reachable, TEST_IMAGE_LANG, TEST_IMAGE_PREFIX, uniqueName } from './env.js';

export const REGISTRY = process.env.TEST_REGISTRY ?? '127.0.0.1:5000';
const docker = new Docker();

/** Fails with a clear message when the local registry does not answer. */
export async function requireRegistry(): Promise<void> {
  const [host, port] = REGISTRY.split(':');
  if (!(await reachable(host!, Number(port))))
    throw new Error(`the image registry does not answer at ${REGISTRY}: run deploy/dev/up.sh first`);
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
  const err = buffered
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { error?: string })
    .find((m) => m.error);
  if (err) throw new Error(err.error);
}

/** The registry's digest of a tag, or null when it has none. */
export async function registryDigest(
  repo: string,
  tag: string,
  registry = REGISTRY,
  auth?: { username: string; password: string },
): Promise<string | null> {
  const headers: Record<string, string> = { Accept: 'application/vnd.docker.distribution.manifest.v2+json' };
  if (auth) headers.Authorization = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
  const res = await fetch(`http://${registry}/v2/${repo}/manifests/${tag}`, { method: 'HEAD', headers });
  return res.status === 200 ? res.headers.get('docker-content-digest') : null;
}

/**
 * Makes `<registry>/test-<random>/kernel-<lang name>:<tag>` from the shared
 * image with `noiseBytes` of random data on top, pushes it, and (unless
 * `keepLocal`) removes it locally so that the next use must pull it. After
 * the test the local image and the registry's manifest are removed.
 */
export async function pushTestImage(
  o: {
    noiseBytes?: number;
    keepLocal?: boolean;
    tag?: string;
    repoBase?: string;
    registry?: string;
    auth?: { username: string; password: string };
  } = {},
): Promise<PushedImage> {
  const registry = o.registry ?? REGISTRY;
  const [name, baseTag] = TEST_IMAGE_LANG.split(':') as [string, string];
  const tag = o.tag ?? baseTag;
  const repoPath = `${o.repoBase ?? uniqueName('test')}/kernel-${name}`;
  const repo = `${registry}/${repoPath}`;
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
    const made = (await c.commit({ repo, tag, changes })) as { Id: string };
    // last of all: the image itself, by id (a pulled copy has the same id), when only test references are left on it
    onCleanup(() => removeIfOurs(made.Id));
  } finally {
    await c.remove({ force: true });
  }
  onCleanup(() => removeLocal(image));
  if (registry === REGISTRY) onCleanup(() => deleteFromRegistry(repoPath, tag));
  await drain(await docker.getImage(image).push({ authconfig: { ...o.auth, serveraddress: registry } }));
  if (!o.keepLocal) await removeLocal(image);
  return { prefix: `${repo.slice(0, repo.lastIndexOf('/') + 1)}kernel-`, lang: `${name}:${tag}`, image, repo: repoPath, tag };
}

/**
 * A tiny image of the test's own (a few files: no shell, no Python, no
 * runner), pushed to `registry` under a repository of its own: a kernel of
 * it runs with the injected runner environment as a shell kernel
 * (docs/images.rst). For what needs an image in a registry but not the
 * kernel image's size: a push to a fresh registry is a few hundred bytes.
 */
export async function pushTinyImage(o: { registry: string; auth?: { username: string; password: string } }): Promise<PushedImage> {
  const repoPath = `${uniqueName('test')}/kernel-tiny`;
  const image = `${o.registry}/${repoPath}:latest`;
  const pack = tar.pack();
  pack.entry({ name: 'etc/', type: 'directory', mode: 0o755 });
  pack.entry({ name: 'etc/os-release', mode: 0o644 }, 'ID=tiny\nPRETTY_NAME="a tiny test image of compute-agent"\n');
  pack.entry({ name: 'etc/passwd', mode: 0o644 }, 'root:x:0:0:root:/root:/bin/sh\n');
  pack.entry({ name: 'etc/group', mode: 0o644 }, 'root:x:0:\n');
  pack.entry({ name: 'tmp/', type: 'directory', mode: 0o1777 });
  pack.entry({ name: 'home/work/', type: 'directory', mode: 0o755 });
  pack.entry({ name: 'noise', mode: 0o644 }, uniqueName('noise')); // an image id of its own
  pack.finalize();
  await drain(await docker.importImage(pack as unknown as NodeJS.ReadableStream, { repo: `${o.registry}/${repoPath}`, tag: 'latest' }));
  const id = (await docker.getImage(image).inspect()).Id;
  onCleanup(() => removeIfOurs(id));
  onCleanup(() => removeLocal(image));
  if (o.registry === REGISTRY) onCleanup(() => deleteFromRegistry(repoPath, 'latest'));
  await drain(await docker.getImage(image).push({ authconfig: { ...o.auth, serveraddress: o.registry } }));
  await removeLocal(image);
  return {
    prefix: `${o.registry}/${repoPath.slice(0, repoPath.lastIndexOf('/') + 1)}kernel-`,
    lang: 'tiny:latest',
    image,
    repo: repoPath,
    tag: 'latest',
  };
}

/**
 * Removes a test image locally: its tag, then the image itself when nothing
 * but references into the same test repository is left on it (a pulled image
 * keeps a `repo@digest` reference after its last tag goes). A shared image
 * keeps its other names.
 */
export async function removeLocal(image: string): Promise<void> {
  const repo = image.slice(0, image.lastIndexOf(':'));
  const info = await docker
    .getImage(image)
    .inspect()
    .catch(() => null);
  await docker
    .getImage(image)
    .remove({ force: true })
    .catch((err: { statusCode?: number }) => {
      if (err.statusCode !== 404) throw err;
    });
  if (!info) return;
  const left = await docker
    .getImage(info.Id)
    .inspect()
    .catch(() => null);
  if (!left) return;
  const refs = [...(left.RepoTags ?? []), ...(left.RepoDigests ?? [])];
  if (refs.every((r) => r.startsWith(`${repo}@`) || r.startsWith(`${repo}:`)))
    await docker
      .getImage(info.Id)
      .remove({ force: true })
      .catch(() => undefined);
}

/** Removes an image by id when it has no references but test ones (`<registry>/test-...`); never a shared image. */
async function removeIfOurs(id: string): Promise<void> {
  const info = await docker
    .getImage(id)
    .inspect()
    .catch(() => null);
  if (!info) return;
  const refs = [...(info.RepoTags ?? []), ...(info.RepoDigests ?? [])];
  if (refs.every((r) => /^[^/]+\/test-[0-9a-f]{8}\//.test(r)))
    await docker
      .getImage(id)
      .remove({ force: true })
      .catch(() => undefined);
}

/** Deletes a tag's manifest from the registry (delete is enabled in deploy/dev/registry/config.yml). */
export async function deleteFromRegistry(repo: string, tag: string): Promise<void> {
  const digest = await registryDigest(repo, tag);
  if (digest) await fetch(`http://${REGISTRY}/v2/${repo}/manifests/${digest}`, { method: 'DELETE' });
}

/** Whether an image is in the local Docker. */
export async function hasImage(image: string): Promise<boolean> {
  return docker
    .getImage(image)
    .inspect()
    .then(
      () => true,
      () => false,
    );
}

/**
 * A registry of the test's own (Debian's docker-registry, the same server
 * up.sh starts) on a free loopback port, with htpasswd (bcrypt) auth for one
 * user and storage in a temp dir; stopped and removed after the test.
 */
export async function authRegistry(username: string, password: string): Promise<{ addr: string }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'registry-'));
  onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
  const hash = spawnSync(
    'python3',
    ['-W', 'ignore', '-c', 'import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))', password],
    { encoding: 'utf8' },
  );
  if (hash.status !== 0 || !hash.stdout.startsWith('$2')) throw new Error(`cannot make a bcrypt hash with python3: ${hash.stderr}`);
  await fs.writeFile(path.join(dir, 'htpasswd'), `${username}:${hash.stdout.trim()}\n`);
  const port = await freePort();
  const config = [
    'version: 0.1',
    'log: {level: error, accesslog: {disabled: true}}',
    `storage: {filesystem: {rootdirectory: ${dir}/data}, delete: {enabled: true}}`,
    `http: {addr: 127.0.0.1:${port}}`,
    `auth: {htpasswd: {realm: test, path: ${dir}/htpasswd}}`,
  ].join('\n');
  await fs.writeFile(path.join(dir, 'config.yml'), config + '\n');
  const child = spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  onCleanup(async () => {
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
  });
  await eventually(`the test registry on port ${port} (${err})`, () => reachable('127.0.0.1', port, 500), 10_000, 100);
  return { addr: `127.0.0.1:${port}` };
}
