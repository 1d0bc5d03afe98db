/**
 * Kernel files from agentctl: `upload`, `download` and `ls`, all inside the
 * kernel's home (/home/work). A download of one file writes that file; a
 * folder (or `--tar`) is written as the tar archive the agent sends.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import type { Argv } from 'yargs';
import { errorMessage } from '../../errors.js';
import { action, CtlError, formatBytes, printJson, printTable, withAgent, type GlobalArgs } from './common.js';
import { addFlags, AGENTCTL_COMMAND_FLAGS } from '../flags.js';

/** Registers the file subcommands on the agentctl parser. */
export function fileCommands(y: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return y
    .command(
      'upload <kernel-id> <file> [dest]',
      "copy a local file into the kernel's home (dest defaults to its base name)",
      (c) =>
        c
          .positional('kernel-id', { type: 'string', demandOption: true })
          .positional('file', { type: 'string', demandOption: true })
          .positional('dest', { type: 'string' }),
      action<GlobalArgs & { kernelId: string; file: string; dest?: string }>(async (argv) => {
        const data = await fs.readFile(argv.file).catch((err: unknown) => {
          throw new CtlError(`cannot read ${argv.file}: ${errorMessage(err)}`);
        });
        const dest = argv.dest ?? path.basename(argv.file);
        await withAgent(argv, (api) => api.uploadFile(argv.kernelId, dest, data));
        process.stdout.write(`uploaded ${argv.file} to ${argv.kernelId}:${dest} (${formatBytes(data.length)})\n`);
      }),
    )
    .command(
      'download <kernel-id> <path>',
      "copy a file (or, as a tar archive, a folder) out of the kernel's home",
      (c) =>
        addFlags(
          c.positional('kernel-id', { type: 'string', demandOption: true }).positional('path', { type: 'string', demandOption: true }),
          AGENTCTL_COMMAND_FLAGS.download,
        ),
      action<GlobalArgs & { kernelId: string; path: string; output?: string; tar: boolean }>(async (argv) => {
        const archive = await withAgent(argv, (api) => api.downloadFile(argv.kernelId, argv.path));
        const single = argv.tar ? null : await singleFile(archive);
        const base = path.basename(argv.path.replace(/\/+$/, '')) || 'home';
        const out = argv.output ?? (single ? base : `${base}.tar`);
        const bytes = single ?? archive;
        if (out === '-') process.stdout.write(bytes);
        else {
          await fs.writeFile(out, bytes).catch((err: unknown) => {
            throw new CtlError(`cannot write ${out}: ${errorMessage(err)}`);
          });
          process.stderr.write(`wrote ${out} (${formatBytes(bytes.length)}${single ? '' : ', tar archive'})\n`);
        }
      }),
    )
    .command(
      'ls <kernel-id> [path]',
      "list a folder of the kernel's home",
      (c) => c.positional('kernel-id', { type: 'string', demandOption: true }).positional('path', { type: 'string', default: '.' }),
      action<GlobalArgs & { kernelId: string; path: string }>((argv) =>
        withAgent(argv, async (api) => {
          const r = await api.listFiles(argv.kernelId, argv.path);
          if (argv.json) return printJson(r);
          if (r.errors) process.stderr.write(`agentctl: ${r.errors}\n`);
          printTable(
            ['MODE', 'SIZE', 'MODIFIED', 'NAME'],
            r.files.map((f) => [f.mode, String(f.size), new Date(f.mtime * 1000).toISOString().slice(0, 19).replace('T', ' '), f.filename]),
          );
        }),
      ),
    );
}

/** The content of the archive's only entry when that entry is a regular file; null otherwise. */
async function singleFile(archive: Buffer): Promise<Buffer | null> {
  const extract = tar.extract();
  let only: Buffer | null = null;
  let entries = 0;
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      entries++;
      const parts: Buffer[] = [];
      stream.on('data', (d: unknown) => parts.push(d as Buffer));
      stream.on('end', () => {
        if (entries === 1 && header.type === 'file') only = Buffer.concat(parts);
        next();
      });
      stream.resume();
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  Readable.from([archive]).pipe(extract);
  await done;
  return entries === 1 ? only : null;
}
