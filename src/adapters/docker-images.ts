/**
 * DockerImages is the agent's adapter to Docker's image API: pull (as a
 * stream of JSON progress messages, cancelled by closing it), list with
 * digests and sizes, remove, the engine's data root, and the stream of image
 * events (pull, tag, untag, delete, load, import), which reconnects by
 * itself when dockerd restarts. Failures become our errors here.
 */
import type Docker from 'dockerode';
import { createHash } from 'node:crypto';
import tar from 'tar-stream';
import type { Logger } from '../log.js';
import { castDockerError } from './docker.js';
import { followEvents, jsonLines } from './docker-events.js';

/** One line of Docker's pull stream. */
export interface DockerProgressMessage {
  status?: string;
  id?: string;
  progressDetail?: { current?: number; total?: number };
  error?: string;
  errorDetail?: { message?: string };
}

/** A local image as list_images reports it. */
export interface LocalImage {
  id: string;
  /** `repo:tag` names; empty for an untagged image. */
  tags: string[];
  /** `repo@sha256:...` of the registries it came from. */
  digests: string[];
  size: number;
  /** Unix seconds. */
  created: number;
  /** The image's labels (what a kernel image says of itself). */
  labels: Record<string, string>;
}

/** The credentials Docker is given for a pull (X-Registry-Auth). */
export interface PullAuth {
  username: string;
  password: string;
  serveraddress: string;
}

/** A running pull: its messages, and `cancel` to stop it (dockerd cancels a pull whose client went away). */
export interface PullStream {
  messages: AsyncIterable<DockerProgressMessage>;
  cancel(): void;
}

/** What the commit of a container needs to know of an image: its id, config, layers and platform. */
export interface ImageConfigView {
  id: string;
  /** The image's container config (Env, Cmd, Entrypoint, Labels, User, WorkingDir...). */
  config: Record<string, unknown> & { Env?: string[]; Labels?: Record<string, string> | null };
  /** The diff ids of its layers, bottom first. */
  layers: string[];
  architecture: string;
  os: string;
  created: string;
}

export class DockerImages {
  constructor(private readonly docker: Docker) {}

  /** Starts pulling `name` (`repo:tag` or `repo@digest`). */
  async pull(name: string, auth: PullAuth | null): Promise<PullStream> {
    const at = name.indexOf('@');
    const colon = name.lastIndexOf(':');
    const split =
      at >= 0
        ? { fromImage: name }
        : colon > name.lastIndexOf('/')
          ? { fromImage: name.slice(0, colon), tag: name.slice(colon + 1) }
          : { fromImage: name, tag: 'latest' };
    let stream: NodeJS.ReadableStream & { destroy(): void };
    try {
      stream = (await this.docker.createImage(auth ?? {}, split)) as unknown as typeof stream;
    } catch (err) {
      throw castDockerError(err, `pulling ${name}`);
    }
    return { messages: jsonLines<DockerProgressMessage>(stream as unknown as AsyncIterable<Buffer>), cancel: () => stream.destroy() };
  }

  /** Starts pushing `name` (`repo:tag`) to its registry; the stream is Docker's JSON progress lines. */
  async push(name: string, auth: PullAuth | null): Promise<PullStream> {
    let stream: NodeJS.ReadableStream & { destroy(): void };
    try {
      stream = (await this.docker.getImage(name).push({ authconfig: auth ?? {} })) as unknown as typeof stream;
    } catch (err) {
      throw castDockerError(err, `pushing ${name}`);
    }
    return { messages: jsonLines<DockerProgressMessage>(stream as unknown as AsyncIterable<Buffer>), cancel: () => stream.destroy() };
  }

  /** Commits a container's file system to a new untagged image (the container paused meanwhile); its id. */
  async commitContainer(containerId: string): Promise<string> {
    try {
      const r = (await this.docker.getContainer(containerId).commit({ pause: true })) as { Id: string };
      return r.Id;
    } catch (err) {
      throw castDockerError(err, `committing container ${containerId.slice(0, 12)}`);
    }
  }

  /** An image's id, config, layers and platform, or null when it is not here. */
  async view(name: string): Promise<ImageConfigView | null> {
    try {
      const i = await this.docker.getImage(name).inspect();
      return {
        id: i.Id,
        config: i.Config as unknown as ImageConfigView['config'],
        layers: i.RootFS.Layers ?? [],
        architecture: i.Architecture,
        os: i.Os,
        created: i.Created,
      };
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return null;
      throw castDockerError(err, `inspecting image ${name}`);
    }
  }

  /**
   * Makes an image of layers the engine already has with a config of our
   * own, tagged `name`, and returns its id: a `docker load` of a tarball
   * holding only the config and manifest (the engine skips the files of
   * layers it has). A commit cannot drop the container's environment or
   * labels (Docker merges them back in); this can.
   */
  async loadConfig(name: string, config: Record<string, unknown>, layerCount: number): Promise<string> {
    const json = Buffer.from(JSON.stringify(config));
    const hex = createHash('sha256').update(json).digest('hex');
    const bundle = tar.pack();
    bundle.entry({ name: `${hex}.json` }, json);
    const layers = Array.from({ length: layerCount }, (_, i) => `${i}/layer.tar`);
    bundle.entry({ name: 'manifest.json' }, JSON.stringify([{ Config: `${hex}.json`, RepoTags: [name], Layers: layers }]));
    bundle.finalize();
    try {
      const out = (await this.docker.loadImage(bundle as unknown as NodeJS.ReadableStream, {
        quiet: true,
      })) as unknown as AsyncIterable<Buffer>;
      for await (const msg of jsonLines<DockerProgressMessage & { stream?: string }>(out)) {
        if (msg.error || msg.errorDetail?.message) throw new Error(msg.errorDetail?.message ?? msg.error);
      }
    } catch (err) {
      throw castDockerError(err, `making image ${name}`);
    }
    return `sha256:${hex}`;
  }

  /** Every local image. */
  async list(): Promise<LocalImage[]> {
    try {
      const list = await this.docker.listImages();
      return list.map((i) => ({
        id: i.Id,
        tags: (i.RepoTags ?? []).filter((t) => !t.endsWith(':<none>')),
        digests: (i.RepoDigests ?? []).filter((d) => !d.startsWith('<none>')),
        size: i.Size,
        created: i.Created,
        labels: i.Labels ?? {},
      }));
    } catch (err) {
      throw castDockerError(err, 'listing images');
    }
  }

  /** The repo digests of a local image, or null when it is not here. */
  async digests(name: string): Promise<string[] | null> {
    try {
      return (await this.docker.getImage(name).inspect()).RepoDigests ?? [];
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return null;
      throw castDockerError(err, `inspecting image ${name}`);
    }
  }

  /** The id (`sha256:...`) a name points to now, or null when it names no local image. */
  async idOf(name: string): Promise<string | null> {
    try {
      return (await this.docker.getImage(name).inspect()).Id;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return null;
      throw castDockerError(err, `inspecting image ${name}`);
    }
  }

  /** The image ids of every container on the engine, running or stopped, whoever made it. */
  async containerImageIds(): Promise<Set<string>> {
    try {
      return new Set((await this.docker.listContainers({ all: true })).map((c) => c.ImageID));
    } catch (err) {
      throw castDockerError(err, 'listing containers');
    }
  }

  /** Removes an image name (untags it; the image goes when its last name does); `force` also for stopped containers' images. */
  async remove(name: string, force = false): Promise<void> {
    try {
      await this.docker.getImage(name).remove({ force, noprune: false });
    } catch (err) {
      throw castDockerError(err, `removing image ${name}`);
    }
  }

  /** The engine's data root (`docker info` DockerRootDir), where pulled layers go. */
  async dataRoot(): Promise<string> {
    try {
      return ((await this.docker.info()) as { DockerRootDir?: string }).DockerRootDir ?? '/var/lib/docker';
    } catch (err) {
      throw castDockerError(err, 'reading the engine info');
    }
  }

  /**
   * Calls `onChange` for every image event, and with `reconnect` after each
   * reconnect of the stream (events may have been missed), until the signal
   * aborts.
   */
  watch(onChange: (action: string, name: string) => void, log: Logger, signal: AbortSignal): Promise<void> {
    return followEvents(this.docker, { type: ['image'] }, (ev) => onChange(ev.Action ?? ev.status ?? '', ev.Actor?.ID ?? ev.id ?? ''), {
      log,
      signal,
      onReconnect: () => onChange('reconnect', ''),
      what: 'Docker image events stream',
    });
  }
}
