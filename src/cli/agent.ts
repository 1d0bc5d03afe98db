#!/usr/bin/env node
/**
 * The `agent` command: validates its flags, builds the agent and runs it in
 * the foreground until SIGTERM or SIGINT. This runtime object is the one
 * owner of signal handlers. `agent check` takes the same flags and prints
 * the preflight checklist instead. A bad flag ends the process at once with one line
 * on stderr and exit code 2; a failed start with one line and exit code 1.
 */
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { Agent } from '../agent.js';
import { validateOptions, type RawOptions } from '../config/options.js';
import { addFlags, AGENT_COMMAND_FLAGS, AGENT_FLAGS, CHECK_FLAGS } from './flags.js';
import { SETTINGS } from '../config/setting-table.js';
import { AgentError, errorMessage } from '../errors.js';
import { createLogger, silentLogger, type Logger } from '../log.js';
import { EtcdStore } from '../adapters/etcd.js';
import { DockerEngine } from '../adapters/docker.js';
import { checkDocument, formatChecklist, runChecks, settingsReader } from './check/checks.js';
import { describeMethods } from '../rpc/listing.js';
import { modernMethods, modernNotServed } from '../rpc/modern-methods.js';
import { generateKeyPairFile } from '../config/keys.js';
import { NvidiaCuda } from '../accelerators/nvidia.js';
import { formatProbe, probeGpus } from '../accelerators/report.js';

const EXIT_USAGE = 2;
const EXIT_FAILED = 1;

function die(message: string, code: number): never {
  process.stderr.write(`agent: error: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
  process.exit(code);
}

async function runAgent(raw: RawOptions): Promise<void> {
  let options;
  try {
    options = await validateOptions(raw);
  } catch (err) {
    die(errorMessage(err), EXIT_USAGE);
  }
  const log = createLogger({ level: options.logLevel, format: options.logFormat });
  const agent = new Agent(options, log);
  installSignals(agent, log);
  agent.onSelfStop = () => process.exit(0); // shutdown_agent drained it as SIGTERM does
  try {
    await agent.start();
  } catch (err) {
    if (agent.currentState === 'stopped') process.exit(0); // a signal arrived while starting
    log.error('the agent could not start', { error: errorMessage(err) });
    if (!(err instanceof AgentError)) log.debug('start failure', { stack: (err as Error).stack });
    die(errorMessage(err), EXIT_FAILED);
  }
}

/** `agent check`: runs the checklist, prints it (or with `--json` one JSON document), exits 0 when every check passed and 1 otherwise. */
async function runCheck(raw: RawOptions, json: boolean): Promise<void> {
  let options;
  try {
    options = await validateOptions(raw, { checkScratch: false });
  } catch (err) {
    // A tool reading --json gets a document here too; the line on stderr and the exit code are as without it.
    if (json) process.stdout.write(JSON.stringify({ ok: false, summary: errorMessage(err), checks: [] }, null, 2) + '\n');
    die(errorMessage(err), EXIT_USAGE);
  }
  const etcd = new EtcdStore(options.etcdAddr, options.namespace, silentLogger());
  const results = await runChecks({ options, etcd, docker: new DockerEngine(), settings: settingsReader(etcd, options.agentId) });
  etcd.close();
  process.stdout.write((json ? JSON.stringify(checkDocument(results), null, 2) : formatChecklist(results)) + '\n');
  process.exit(results.every((r) => r.ok) ? 0 : EXIT_FAILED);
}

function installSignals(agent: Agent, log: Logger): void {
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      log.warn('second signal: exiting without finishing the drain', { signal });
      process.exit(EXIT_FAILED);
    }
    signalled = true;
    agent.stopOnSignal(signal).then(
      () => process.exit(0),
      (err: unknown) => die(`stop failed: ${errorMessage(err)}`, EXIT_FAILED),
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // A bug must not take the daemon (and the calls in flight) down with it: log it loudly instead.
  process.on('unhandledRejection', (reason) =>
    log.error('unhandled promise rejection (a bug; please report it)', { error: errorMessage(reason), stack: (reason as Error)?.stack }),
  );
}

function settingsEpilogue(): string {
  const rows = SETTINGS.map((s) => `  ${s.key.padEnd(24)} ${String(s.default).padEnd(16)} ${s.doc}${s.live ? '' : ' (at start)'}`);
  return [
    'Settings read from etcd under /sorna/<namespace>/config/agent/<key> (cluster)',
    'and /sorna/<namespace>/nodes/agents/<agent id>/config/<key> (this node, wins):',
    ...rows,
    `  ${'pool/<key>'.padEnd(24)} ${''.padEnd(16)} warm pool: types, images, autoscale, ... (docs/pool.rst)`,
    '',
    'Every flag can also be given as an environment variable BACKEND_<FLAG>,',
    'e.g. BACKEND_ETCD_ADDR, BACKEND_SCRATCH_ROOT, BACKEND_AGENT_PORT.',
  ].join('\n');
}

/**
 * The flags of the agent, shared by the daemon and `agent check` (same flags,
 * same BACKEND_* variables). Only these commands read BACKEND_*: an env file
 * with them must not break `agent methods` or `agent keygen` (strict mode).
 */
function agentFlags<T>(y: Argv<T>) {
  return addFlags<T, RawOptions>(y.env('BACKEND'), AGENT_FLAGS);
}

/** The raw options from parsed flags. */
function rawOptions(argv: RawOptions): RawOptions {
  return {
    etcdAddr: argv.etcdAddr,
    namespace: argv.namespace,
    agentId: argv.agentId,
    region: argv.region,
    agentPort: argv.agentPort,
    bindHost: argv.bindHost,
    agentHostOverride: argv.agentHostOverride,
    kernelHostOverride: argv.kernelHostOverride,
    scratchRoot: argv.scratchRoot,
    idleTimeout: argv.idleTimeout,
    logLevel: argv.logLevel,
    logFormat: argv.logFormat,
    metrics: argv.metrics,
    metricsPort: argv.metricsPort,
  };
}

await yargs(hideBin(process.argv))
  .scriptName('agent')
  .usage(
    "$0 [options]\n\nRuns the compute agent of this node in the foreground: serves the manager's RPC on --agent-port,\nsends events to the manager's sink found in etcd, and runs kernel containers on Docker.",
  )
  .command(
    '$0',
    'run the agent (the default command)',
    (y) => agentFlags(y).epilogue(settingsEpilogue()),
    async (argv) => {
      await runAgent(rawOptions(argv));
    },
  )
  .command(
    'check',
    'check everything the agent needs before it runs (etcd, scratch root, Docker, images, port, cgroups); exit code 0 when all pass',
    (y) => addFlags<RawOptions, { json: boolean }>(agentFlags(y), CHECK_FLAGS),
    async (argv) => {
      await runCheck(rawOptions(argv), argv.json);
    },
  )
  .command(
    'gpus',
    'detect the GPUs of this node and print them, the path containers would take (runtime, device-nodes, none) and the Docker arguments for one device; exit code 1 on the CPU fallback',
    (y) => addFlags<unknown, { json: boolean; allow: string }>(y, AGENT_COMMAND_FLAGS.gpus),
    async (argv) => {
      const allow = argv.allow
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      const docker = new DockerEngine();
      const probe = await probeGpus(new NvidiaCuda({ allow: () => allow, docker: () => docker.runtimes() }));
      process.stdout.write((argv.json ? JSON.stringify(probe, null, 2) : formatProbe(probe)) + '\n');
      process.exit(probe.state.path === 'none' ? EXIT_FAILED : 0);
    },
  )
  .command(
    'methods',
    'list the RPC methods this agent serves, with their parameters',
    (y) => addFlags<unknown, { modern: boolean }>(y, AGENT_COMMAND_FLAGS.methods),
    (argv) => {
      const text = argv.modern
        ? `${describeMethods(Object.values(modernMethods))}\nnot served yet (each answers a failure naming it): ${modernNotServed.join(', ')}`
        : describeMethods();
      process.stdout.write(text + '\n');
    },
  )
  .command(
    'keygen',
    'write a new CURVE key pair file for rpc_keypair_file (mode 0600) and print its public key',
    (y) => addFlags<unknown, { out: string }>(y, AGENT_COMMAND_FLAGS.keygen),
    async (argv) => {
      try {
        const pair = await generateKeyPairFile(argv.out);
        process.stdout.write(`${pair.publicKey}\n`);
      } catch (err) {
        die(errorMessage(err), EXIT_FAILED);
      }
    },
  )
  .completion('completion', 'print a bash/zsh completion script (agent completion >> ~/.bashrc)')
  .strict()
  .help()
  .alias('h', 'help')
  .version()
  .wrap(Math.min(110, process.stdout.columns || 100))
  .fail((msg, err) => {
    die(`${msg ?? errorMessage(err)} (agent --help lists the options)`, EXIT_USAGE);
  })
  .parseAsync();
