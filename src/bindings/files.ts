/**
 * The file methods of the 2018 table (upload_file, download_file,
 * list_files; src/rpc/methods.ts) bound to each kernel's scratch files
 * (src/kernels/files.ts).
 */
import { implement, type Binding } from '../rpc/dispatcher.js';
import { methods } from '../rpc/methods.js';
import type { KernelService } from '../kernels/service.js';

/** fileBindings are the file methods and what serves each. */
export function fileBindings(kernels: KernelService): Binding[] {
  return [
    implement(methods.upload_file, async (id, filename, data) => {
      await (await kernels.files(id)).upload(filename, data);
      return null;
    }),
    implement(methods.download_file, async (id, filepath) => (await kernels.files(id)).download(filepath)),
    implement(methods.list_files, async (id, dir) => (await kernels.files(id)).list(dir)),
  ];
}
