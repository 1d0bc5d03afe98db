/**
 * Lang and image names: the one place that says what a `lang` is, which
 * image it names, and how an image name splits the way a registry reads it.
 *
 * A lang is what a manager names a kernel image by (create_kernel's
 * `lang`, the prepull list, pool/images, pull_image and the other image
 * methods): an image name without a digest, `name[:tag]`, such as
 * `python:3-debian` or, for an image on image_allow_list, a full name with
 * its registry host such as `127.0.0.1:5000/lablup/kernel-python:3-debian`.
 * It resolves to `image_prefix` + lang, or to itself when it is on
 * image_allow_list; every name is checked here, so a lang one path takes
 * every other path takes too.
 *
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
  if (name.length === 0 || name.length > 512)
    throw new Error(`image name ${JSON.stringify(name.slice(0, 64))} must have 1 to 512 characters`);
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

/** The longest lang: a registry host and repository (255) and a tag (128). */
const MAX_LANG = 384;
const EXAMPLE = 'such as "python:3-debian"';

/**
 * Checks a lang's syntax (an image name `name[:tag]` without a digest, see
 * the module's comment); throws an Error that names the lang and what is wrong.
 */
export function checkLang(lang: string): void {
  const must = `lang must be an image "name:tag" ${EXAMPLE}; ${JSON.stringify(lang.slice(0, 80))}`;
  if (lang.length === 0 || lang.length > MAX_LANG) throw new Error(`${must} has ${lang.length} characters, not 1 to ${MAX_LANG}`);
  if (lang.includes('@')) throw new Error(`${must} names a digest: name the image by its tag`);
  const slash = lang.lastIndexOf('/');
  const colon = lang.lastIndexOf(':');
  const name = colon > slash ? lang.slice(0, colon) : lang;
  if (name.split('/').some((seg) => seg === '' || seg === '.' || seg === '..'))
    throw new Error(`${must} has an empty, "." or ".." path segment`);
  try {
    parseImageRef(lang);
  } catch (err) {
    throw new Error(`${must} is no image name (${(err as Error).message})`, { cause: err });
  }
}

/** Whether a lang's syntax is good ({@link checkLang} says what is wrong otherwise). */
export function isLang(lang: string): boolean {
  try {
    checkLang(lang);
    return true;
  } catch {
    return false;
  }
}

/**
 * The image a lang names: the lang itself when it is on the allow-list,
 * else `imagePrefix` + lang (never with an empty prefix, which would let a
 * manager name any image on the node). Throws an Error naming what is wrong:
 * a bad lang, an empty prefix, or a lang that makes no image name under the
 * prefix (a full name with a registry host belongs on the allow-list).
 */
export function resolveImage(lang: string, imagePrefix: string, allowList: readonly string[] = []): string {
  checkLang(lang);
  if (allowList.includes(lang)) return lang;
  if (!imagePrefix)
    throw new Error(
      `lang ${JSON.stringify(lang)} is not on image_allow_list and image_prefix is empty: add it to the list or set a prefix`,
    );
  const image = imagePrefix + lang;
  try {
    parseImageRef(image);
  } catch (err) {
    throw new Error(
      `lang ${JSON.stringify(lang)} under image_prefix ${JSON.stringify(imagePrefix)} makes no image name (${(err as Error).message}): name the image under the prefix, or put the full name on image_allow_list`,
      { cause: err },
    );
  }
  return image;
}

/**
 * The lang an image name stands for, or null when it is not a kernel image:
 * itself when it is on the allow-list, else the part after the image prefix
 * (also when Docker Hub's host is written out, `docker.io/<prefix>...`).
 */
export function langOfImage(image: string, imagePrefix: string, allowList: readonly string[]): string | null {
  if (allowList.includes(image)) return image;
  if (!imagePrefix) return null;
  for (const pre of [imagePrefix, `docker.io/${imagePrefix}`, `index.docker.io/${imagePrefix}`]) {
    if (image.startsWith(pre) && image.length > pre.length) return image.slice(pre.length);
  }
  return null;
}

/** The lang's name without its tag, as used in container names (`kernel.<name>.<id>`). */
export function langName(lang: string): string {
  const slash = lang.lastIndexOf('/');
  const colon = lang.lastIndexOf(':');
  return (colon > slash ? lang.slice(0, colon) : lang).replace(/[^A-Za-z0-9_.-]/g, '-');
}
