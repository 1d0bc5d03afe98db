/**
 * `agentctl commit <kernel> <image>` and `agentctl push <image>`
 * (docs/agentctl.rst, "Saving a kernel as an image"): a kernel saved as an
 * image through the agent's commit_kernel, and such an image pushed to its
 * registry through push_image.
 */
import type { Argv } from 'yargs';
import { addFlags, AGENTCTL_COMMAND_FLAGS } from '../flags.js';
import { action, printJson, withAgent, type GlobalArgs } from './common.js';

type CommitArgs = GlobalArgs & { kernel: string; image: string; background: boolean };
type PushArgs = GlobalArgs & { image: string };

/** Registers commit and push on the agentctl parser. */
export function commitCommands(y: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return y
    .command(
      'commit <kernel> <image>',
      'save a kernel as an image (what was installed in it, without its home and vfolders); the kernel keeps running',
      (c) =>
        addFlags(
          c.positional('kernel', { type: 'string', demandOption: true, describe: 'the kernel id' }).positional('image', {
            type: 'string',
            demandOption: true,
            describe:
              "the image to make, a full name under the agent's image prefix or on its allow list, e.g. 127.0.0.1:5000/me/kernel-python:mine",
          }),
          AGENTCTL_COMMAND_FLAGS.commit,
        ),
      action<CommitArgs>((argv) =>
        withAgent(argv, async (api) => {
          const r = await api.commitKernel(argv.kernel, argv.image, !argv.background);
          if (argv.json) return printJson(r);
          process.stdout.write(
            r.status === 'ready'
              ? `saved ${r.kernel} as ${r.image} (${r.image_id})\n`
              : `saving ${r.kernel} as ${r.image} in the background\n`,
          );
        }),
      ),
    )
    .command(
      'push <image>',
      'push an image the agent saved (agentctl commit) to its registry, with the credentials etcd has for it',
      (c) => c.positional('image', { type: 'string', demandOption: true, describe: 'the image, as given to agentctl commit' }),
      action<PushArgs>((argv) =>
        withAgent(argv, async (api) => {
          if (!argv.json) process.stdout.write(`pushing ${argv.image}...\n`);
          const r = await api.pushImage(argv.image);
          if (argv.json) return printJson(r);
          process.stdout.write(`pushed ${r.image}${r.digest ? ` (${r.digest})` : ''}\n`);
        }),
      ),
    );
}
