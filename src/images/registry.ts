/**
 * RegistryClient reads what the agent needs from an image registry before
 * it asks Docker to pull: the manifest digest of a tag (auto_pull=digest)
 * and the compressed size of its layers (the free-space check). It speaks
 * the distribution API v2 (HTTPS, plain HTTP on loopback as Docker does),
 * with Basic or token (Bearer) authentication from the registry's
 * credentials. Credentials are sent only to the registry and its token
 * realm and never appear in an error message.
 */
import { createHash } from 'node:crypto';
import type { ImageRef } from '../config/lang.js';
import { registryCredentialKeys } from '../config/etcd-keys.js';

/** A registry's user name and password (etcd `config/docker/registry/<host>/{username,password}`). */
export interface RegistryCredentials {
  username: string;
  password: string;
}

/**
 * Reads a registry's credentials through `get` (an etcd read relative to the
 * namespace): null when no user name is set, an empty password when none is.
 * The one reader of these keys; a failed read throws.
 */
export async function readRegistryCredentials(
  get: (key: string) => Promise<string | null>,
  host: string,
): Promise<RegistryCredentials | null> {
  const keys = registryCredentialKeys(host);
  const [username, password] = await Promise.all([get(keys.username), get(keys.password)]);
  return username ? { username, password: password ?? '' } : null;
}

/** Whether a registry host is on loopback, where plain HTTP is used (as Docker does). */
export function isLoopbackRegistry(host: string): boolean {
  const h = host.replace(/:[0-9]+$/, '').replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.[0-9]+\.[0-9]+\.[0-9]+$/.test(h);
}

/** What a manifest says about an image. */
export interface ManifestInfo {
  /** The digest of the manifest the tag points at (a manifest list's own digest for multi-platform images). */
  digest: string;
  /** Sum of the compressed layer and config blob sizes for this node's platform. */
  compressedBytes: number;
  layers: number;
}

/** RegistryError is thrown when a registry cannot be asked or refuses; `notFound` when it has no such tag. */
export class RegistryError extends Error {
  constructor(
    message: string,
    readonly notFound = false,
  ) {
    super(message);
  }
}

const MANIFEST_TYPES = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ');
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x' };

interface Descriptor {
  digest?: string;
  size?: number;
  platform?: { os?: string; architecture?: string };
}

export class RegistryClient {
  /** Tokens by `host scope`, reused until they expire. */
  private readonly tokens = new Map<string, { token: string; until: number }>();

  constructor(
    private readonly credentials: (host: string) => Promise<RegistryCredentials | null>,
    private readonly timeoutMs = 30_000,
  ) {}

  /** The manifest of an image for this node's platform; a RegistryError with `notFound` when the registry has no such tag. */
  async manifest(ref: ImageRef, signal?: AbortSignal): Promise<ManifestInfo> {
    const top = await this.fetchManifest(ref, ref.digest ?? ref.tag, signal);
    let body = top.body as { mediaType?: string; manifests?: Descriptor[]; layers?: Descriptor[]; config?: Descriptor };
    if (Array.isArray(body.manifests)) {
      const arch = ARCH[process.arch] ?? process.arch;
      const pick = body.manifests.find((m) => m.platform?.os === 'linux' && m.platform.architecture === arch);
      if (!pick?.digest) throw new RegistryError(`${ref.name} has no image for linux/${arch} in the registry`, true);
      body = (await this.fetchManifest(ref, pick.digest, signal)).body as typeof body;
    }
    const layers = Array.isArray(body.layers) ? body.layers : [];
    const size = (d: Descriptor | undefined) => (typeof d?.size === 'number' && d.size >= 0 ? d.size : 0);
    return { digest: top.digest, compressedBytes: layers.reduce((n, l) => n + size(l), size(body.config)), layers: layers.length };
  }

  private async fetchManifest(ref: ImageRef, reference: string, signal?: AbortSignal): Promise<{ digest: string; body: unknown }> {
    const scheme = isLoopbackRegistry(ref.registry) ? 'http' : 'https';
    const url = `${scheme}://${ref.registry}/v2/${ref.repository}/manifests/${reference}`;
    const res = await this.get(ref, url, signal);
    if (res.status === 404) throw new RegistryError(`the registry ${ref.registry} has no ${ref.repository}:${reference}`, true);
    if (res.status === 401 || res.status === 403) {
      throw new RegistryError(
        `the registry ${ref.registry} refused access to ${ref.repository} (HTTP ${res.status}): check its credentials in etcd (${registryCredentialKeys(ref.registry).username}, /password)`,
      );
    }
    if (res.status !== 200)
      throw new RegistryError(
        `the registry ${ref.registry} answered HTTP ${res.status} for the manifest of ${ref.repository}:${reference}`,
      );
    const raw = Buffer.from(await res.arrayBuffer());
    if (raw.length > MAX_MANIFEST_BYTES) throw new RegistryError(`the manifest of ${ref.name} is larger than ${MAX_MANIFEST_BYTES} bytes`);
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new RegistryError(`the registry ${ref.registry} sent a manifest for ${ref.name} that is not JSON`);
    }
    const digest = res.headers.get('docker-content-digest') ?? `sha256:${createHash('sha256').update(raw).digest('hex')}`;
    return { digest, body };
  }

  /** One GET with the registry's auth: a 401 with a challenge is answered once (Basic, or a Bearer token from the realm). */
  private async get(ref: ImageRef, url: string, signal?: AbortSignal): Promise<Response> {
    const scope = `repository:${ref.repository}:pull`;
    const cached = this.tokens.get(`${ref.registry} ${scope}`);
    const headers: Record<string, string> = { Accept: MANIFEST_TYPES };
    if (cached && cached.until > Date.now()) headers.Authorization = `Bearer ${cached.token}`;
    let res = await this.request(url, headers, ref, signal);
    if (res.status !== 401) return res;
    const challenge = res.headers.get('www-authenticate') ?? '';
    await res.arrayBuffer().catch(() => undefined); // only drains the body so the connection is reused; the answer was read already
    const creds = await this.credentials(ref.registry);
    const basic = creds ? `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}` : null;
    if (/^basic/i.test(challenge)) {
      if (!basic) return res;
      headers.Authorization = basic;
    } else if (/^bearer/i.test(challenge)) {
      const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!.toLowerCase(), m[2]!]));
      if (!params.realm) return res;
      const realm = new URL(params.realm);
      if (params.service) realm.searchParams.set('service', params.service);
      realm.searchParams.set('scope', params.scope ?? scope);
      const tokenRes = await this.request(realm.toString(), basic ? { Authorization: basic } : {}, ref, signal);
      if (tokenRes.status !== 200) return res;
      const t = (await tokenRes.json().catch(() => ({}))) as { token?: string; access_token?: string; expires_in?: number };
      const token = t.token ?? t.access_token;
      if (!token) return res;
      this.tokens.set(`${ref.registry} ${scope}`, { token, until: Date.now() + Math.max(30, (t.expires_in ?? 60) - 10) * 1000 });
      headers.Authorization = `Bearer ${token}`;
    } else return res;
    res = await this.request(url, headers, ref, signal);
    return res;
  }

  private async request(url: string, headers: Record<string, string>, ref: ImageRef, signal?: AbortSignal): Promise<Response> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    try {
      return await fetch(url, { headers, redirect: 'follow', signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const why = timeout.aborted
        ? `no answer within ${this.timeoutMs / 1000} s`
        : ((err as { cause?: Error }).cause?.message ?? (err as Error).message);
      throw new RegistryError(`cannot reach the registry ${ref.registry} (${why}); is it up and reachable from this node?`);
    }
  }
}
