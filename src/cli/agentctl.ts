#!/usr/bin/env node
/**
 * The `agentctl` command: talks to one agent over its RPC port (`--agent`,
 * or found in etcd), and to etcd for the agents and the event sink. Each
 * subcommand lives in `ctl/`. A failure is one line on stderr and exit code 1;
 * a bad flag exits 2; `run` exits with the run's exit code.
 */
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { attachCommand } from './ctl/attach.js';
import { EXIT_USAGE, type GlobalArgs } from './ctl/common.js';
import { eventsCommand } from './ctl/events.js';
import { fileCommands } from './ctl/files.js';
import { imagesCommand } from './ctl/images.js';
import { infoCommands } from './ctl/info.js';
import { runCommand } from './ctl/run.js';
import { callCommand } from './ctl/modern.js';
import { openCommand } from './ctl/open.js';
import { drainCommands } from './ctl/drain.js';
import { commitCommands } from './ctl/commit.js';
import { addFlags, AGENTCTL_FLAGS } from './flags.js';

const base = yargs(hideBin(process.argv))
  .scriptName('agentctl')
  .usage('$0 <command> [options]\n\nDrives a compute agent: its kernels, code runs, terminals, files and events.')
  .env('AGENTCTL');
const parser = addFlags<unknown, GlobalArgs>(base, AGENTCTL_FLAGS) as unknown as Argv<GlobalArgs>;

let commands = parser;
for (const add of [
  infoCommands,
  runCommand,
  attachCommand,
  eventsCommand,
  fileCommands,
  imagesCommand,
  callCommand,
  openCommand,
  drainCommands,
  commitCommands,
])
  commands = add(commands);

await commands
  .demandCommand(1, 'give a command')
  .completion('completion', 'print a bash/zsh completion script (agentctl completion >> ~/.bashrc)')
  .strict()
  .help()
  .alias('h', 'help')
  .version()
  .wrap(Math.min(110, process.stdout.columns || 100))
  .fail((msg, err) => {
    process.stderr.write(`agentctl: ${msg ?? err?.message ?? 'bad usage'} (agentctl --help lists the commands)\n`);
    process.exit(EXIT_USAGE);
  })
  .parseAsync();
