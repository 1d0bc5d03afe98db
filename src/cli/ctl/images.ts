/**
 * `agentctl images`: `list` (the default), `pull LANG` with a progress bar
 * (from list_pulls, i.e. Docker's progress messages as the agent aggregates
 * them), `rm LANG... [--force]`, `gc [--dry-run]` (a pass of the image
 * collector now, or the list of what it would remove). All take `--json`. `followPull` is shared
 * with `agentctl run`, whose create may wait for a first pull.
 */
import type { Argv } from 'yargs';
import type { AgentApi } from '../../rpc/api.js';
import type { ImageGcResult } from '../../rpc/results.js';
import { action, CtlError, formatAge, formatBytes, printJson, printTable, withAgent, type GlobalArgs } from './common.js';
import { PullBar } from './progress-bar.js';
import { addFlags, AGENTCTL_COMMAND_FLAGS } from '../flags.js';

interface PullArgs extends GlobalArgs {
  lang: string;
}
interface RmArgs extends GlobalArgs {
  langs: string[];
  force: boolean;
}
interface GcArgs extends GlobalArgs {
  dryRun: boolean;
}

/**
 * Shows the progress of any pull of `image` on `out` until `done` settles
 * (polling list_pulls twice a second); returns what `done` gives.
 */
export async function followPull<T>(
  api: AgentApi,
  image: string | ((images: string[]) => string | undefined),
  done: Promise<T>,
  out: NodeJS.WriteStream,
): Promise<T> {
  let bar: PullBar | null = null;
  let settled = false;
  const finished = done.finally(() => (settled = true));
  const poll = async () => {
    while (!settled) {
      const pulls = await api.listPulls().catch(() => []); // an agent without the call shows no pulls
      const name = typeof image === 'string' ? image : image(pulls.map((p) => p.image));
      const p = pulls.find((x) => x.image === name) ?? null;
      if (p) {
        bar ??= new PullBar(p.image, { tty: out.isTTY === true, columns: out.columns });
        out.write(bar.update(p));
      }
      await Promise.race([
        finished.catch(() => undefined) /* its failure is reported where it is awaited */,
        new Promise((r) => setTimeout(r, 500)),
      ]);
    }
  };
  const polling = poll();
  try {
    return await finished;
  } finally {
    await polling;
    if (bar) out.write((bar as PullBar).finish());
  }
}

/** Registers `images` on the agentctl parser. */
export function imagesCommand(y: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return y.command('images', "the node's kernel images: list, pull, rm, gc", (c) =>
    c
      .command(
        ['list', '$0'],
        'list the kernel images with id, digest, size and users',
        {},
        action<GlobalArgs>((argv) =>
          withAgent(argv, async (api) => {
            const list = await api.listImages();
            if (argv.json) return printJson(list);
            const now = Date.now() / 1000;
            printTable(
              ['LANG', 'IMAGE', 'ID', 'SIZE', 'CREATED', 'KERNELS', 'POOLED'],
              list.map((i) => [
                i.lang,
                i.image,
                i.id.replace(/^sha256:/, '').slice(0, 12),
                formatBytes(i.size),
                `${formatAge(now - i.created)} ago`,
                String(i.kernels),
                String(i.pooled),
              ]),
            );
          }),
        ),
      )
      .command(
        'pull <lang>',
        "pull a kernel image (name:tag under the agent's image prefix) with a progress bar",
        (p) =>
          p.positional('lang', {
            type: 'string',
            demandOption: true,
            describe: 'the image as create_kernel names it, e.g. python:3-debian',
          }),
        action<PullArgs>((argv) =>
          withAgent(argv, async (api) => {
            const done = api.pullImage(argv.lang);
            // The agent names the image; until the pull is listed, follow the one whose name ends with the lang.
            const r = await followPull(
              api,
              (images) => images.find((i) => i.endsWith(argv.lang)),
              done,
              argv.json ? process.stderr : process.stdout,
            );
            if (argv.json) return printJson(r);
            process.stdout.write(r.pulled ? `pulled ${r.image}\n` : `${r.image} is already here\n`);
          }),
        ),
      )
      .command(
        'rm <langs..>',
        "remove kernel images; one in use is refused (--force removes idle pooled containers with it, never a kernel's image)",
        (p) =>
          addFlags(
            p.positional('langs', { type: 'string', array: true, demandOption: true, describe: 'images as create_kernel names them' }),
            AGENTCTL_COMMAND_FLAGS['images rm'],
          ),
        action<RmArgs>((argv) =>
          withAgent(argv, async (api) => {
            const results = await api.purgeImages(argv.langs, argv.force);
            if (argv.json) printJson(results);
            else
              for (const r of results)
                process.stdout.write(r.removed ? `removed ${r.image}\n` : `kept ${r.image}: ${r.error ?? 'not removed'}\n`);
            if (results.some((r) => !r.removed))
              throw new CtlError(`${results.filter((r) => !r.removed).length} of ${results.length} images were not removed`);
          }),
        ),
      )
      .command(
        'gc',
        'remove unused kernel images, least recently used first, until the data root is under image_gc_low (--dry-run: list them)',
        (p) => addFlags(p, AGENTCTL_COMMAND_FLAGS['images gc']),
        action<GcArgs>((argv) =>
          withAgent(argv, async (api) => {
            const r = await api.gcImages(argv.dryRun);
            if (argv.json) return printJson(r);
            printGc(r);
            if (r.failed.length) throw new CtlError(`${r.failed.length} image(s) could not be removed`);
          }),
        ),
      )
      .demandCommand(0),
  );
}

/** The table of a gc pass: what went (or would go), then what stays and why. */
function printGc(r: ImageGcResult): void {
  const now = Date.now() / 1000;
  process.stdout.write(
    `${r.data_root}: ${r.usage_pct}% used (high ${r.high_pct}%, low ${r.low_pct}%)` +
      (r.dry_run ? '' : `, ${r.usage_after_pct}% after`) +
      '\n',
  );
  if (!r.ran && !r.dry_run) {
    process.stdout.write('under the low watermark: nothing removed\n');
    return;
  }
  if (r.dry_run)
    process.stdout.write(
      r.ran
        ? 'would remove, in this order, until usage is under the low watermark:\n'
        : 'under the low watermark: a pass now removes nothing; were usage over it, these would go in this order:\n',
    );
  printTable(
    [r.dry_run ? 'WOULD REMOVE' : 'REMOVED', 'ID', 'SIZE', 'LAST USED'],
    r.removed.map((i) => [
      i.names.filter((n) => !n.includes('@')).join(',') || i.image,
      i.id.replace(/^sha256:/, '').slice(0, 12),
      formatBytes(i.size),
      i.last_used === null ? 'never recorded' : `${formatAge(now - i.last_used)} ago`,
    ]),
  );
  for (const k of r.kept) process.stdout.write(`kept ${k.image}: ${k.reason}\n`);
  for (const f of r.failed) process.stdout.write(`failed ${f.image}: ${f.error}\n`);
}
