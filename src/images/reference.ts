/**
 * ImageRef is an image name split the way a registry reads it: the
 * registry host (Docker Hub when the first path part has no dot, colon or
 * is not `localhost`), the repository and the tag or digest. The agent uses
 * it to find a registry's credentials and to ask the registry for a
 * manifest; Docker itself is always given the name as it was written.
 */

/** The host Docker Hub's images are fetched from. */
export const DOCKER_HUB = 'registry-1.docker.io';

export interface ImageRef {
  /** The name as written, e.g. `127.0.0.1:5000/lablup/kernel-python:3-debian`. */
  name: string;
  /** `host[:port]` of the registry; {@link DOCKER_HUB} for Docker Hub. */
  registry: string;
  /** `lablup/kernel-python`; `library/<name>` for Docker Hub's official images. */
  repository: string;
  /** `3-debian`; `latest` when the name has neither tag nor digest. */
  tag: string;
  /** `sha256:...` when the name pins a digest. */
  digest: string | null;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const HOST = /^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$/;

/** Parses an image name; throws an Error saying what is wrong with it. */
export function parseImageRef(name: string): ImageRef {
  if (name.length === 0 || name.length > 512) throw new Error(`image name ${JSON.stringify(name.slice(0, 64))} must have 1 to 512 characters`);
  let rest = name;
  let digest: string | null = null;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new Error(`image name ${JSON.stringify(name)} has a malformed digest (sha256:<64 hex digits>)`);
  }
  let tag = 'latest';
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new Error(`image name ${JSON.stringify(name)} has a malformed tag`);
  }
  const parts = rest.split('/');
  let registry = DOCKER_HUB;
  if (parts.length > 1 && (parts[0]!.includes('.') || parts[0]!.includes(':') || parts[0] === 'localhost')) {
    registry = parts.shift()!;
    if (!HOST.test(registry)) throw new Error(`image name ${JSON.stringify(name)} has a malformed registry host`);
  }
  if (parts.length === 0 || !parts.every((p) => COMPONENT.test(p))) {
    throw new Error(`image name ${JSON.stringify(name)} has a malformed repository (lower-case letters, digits and separators)`);
  }
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library');
  return { name, registry, repository: parts.join('/'), tag, digest };
}

/** The name with `:latest` added when it has neither tag nor digest (how Docker lists it). */
export function withTag(name: string): string {
  const ref = parseImageRef(name);
  if (ref.digest || name.slice(name.lastIndexOf('/') + 1).includes(':')) return name;
  return `${name}:${ref.tag}`;
}

/** Whether a registry host is on loopback, where plain HTTP is used (as Docker does). */
export function isLoopbackRegistry(host: string): boolean {
  const h = host.replace(/:[0-9]+$/, '').replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.[0-9]+\.[0-9]+\.[0-9]+$/.test(h);
}
