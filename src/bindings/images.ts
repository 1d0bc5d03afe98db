/**
 * The image RPC methods (list_images, list_pulls, pull_image, delete_image,
 * purge_images, gc_images; declared in src/rpc/methods.ts) bound to the image room.
 */
import { implement, type Binding } from '../rpc/dispatcher.js';
import { methods } from '../rpc/methods.js';
import type { ImageService } from '../images/service.js';

/** What serves each image method. */
export function imageBindings(images: ImageService): Binding[] {
  return [
    implement(methods.list_images, () => images.listImages()),
    implement(methods.list_pulls, () => images.listPulls()),
    implement(methods.pull_image, (image) => images.pullImage(image)),
    implement(methods.delete_image, (image, force) => images.deleteImage(image, force ?? false)),
    implement(methods.purge_images, (list, force) => images.purgeImages(list, force ?? false)),
    implement(methods.gc_images, (dryRun) => images.gc.run({ dryRun: dryRun ?? false, manual: true })),
  ];
}
