/**
 * DockerEngine is the agent's adapter to the Docker engine. For now it lists
 * the kernel images that the heartbeat advertises; kernel containers come
 * with the kernel lifecycle.
 */
import Docker from 'dockerode';

/** A kernel image as the heartbeat lists it: `name:tag` without the prefix, and the image id. */
export type KernelImage = [nameTag: string, imageId: string];

export class DockerEngine {
  readonly docker: Docker;

  /** Connects through DOCKER_HOST if set, else the local socket. */
  constructor(options: Docker.DockerOptions = {}) {
    this.docker = new Docker(options);
  }

  /** Engine version, which also proves the engine answers. */
  async version(): Promise<string> {
    const v = await this.docker.version();
    return v.Version;
  }

  /** The local images whose repository starts with the prefix, as `[name:tag without prefix, id]`. */
  async kernelImages(prefix: string): Promise<KernelImage[]> {
    const images = await this.docker.listImages();
    const out: KernelImage[] = [];
    for (const image of images) {
      for (const tag of image.RepoTags ?? []) {
        if (tag.startsWith(prefix) && !tag.endsWith(':<none>')) out.push([tag.slice(prefix.length), image.Id]);
      }
    }
    return out.sort((a, b) => a[0].localeCompare(b[0]));
  }
}
