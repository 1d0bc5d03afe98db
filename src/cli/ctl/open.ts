/**
 * `agentctl open <kernel-id> <service>`: starts an app of the kernel's image
 * (start_service, with a fresh token the app may use) unless it runs, and
 * prints its URL, with the token for an http app it started. `--forward
 * LOCAL_PORT` serves that URL on this machine instead, through a plain TCP
 * relay of the agentctl process to the app's host port, for users who cannot
 * reach the node; it runs until Ctrl-C.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Argv } from 'yargs';
import { action, CtlError, EXIT_USAGE, withAgent, type GlobalArgs } from './common.js';
import { addFlags, AGENTCTL_COMMAND_FLAGS } from '../flags.js';

interface OpenArgs extends GlobalArgs {
  kernelId: string;
  service: string;
  forward?: number;
  bind: string;
}

/** Relays every connection to `localPort` on `bind` to `host:port`; resolves once listening. */
export function forwardPort(bind: string, localPort: number, host: string, port: number): Promise<net.Server> {
  const server = net.createServer((local) => {
    const remote = net.connect({ host, port });
    local.pipe(remote).pipe(local);
    const end = () => {
      local.destroy();
      remote.destroy();
    };
    local.on('error', end).on('close', end);
    remote.on('error', end).on('close', end);
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new CtlError(`cannot listen on ${bind}:${localPort} for --forward (${err.code ?? err.message}): choose another port`)),
    );
    server.listen(localPort, bind, () => resolve(server));
  });
}

export function openCommand(y: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return y.command(
    'open <kernel-id> <service>',
    "start an app of a kernel's image (e.g. jupyter) if needed and print its URL",
    (c) =>
      addFlags(
        c
          .positional('kernel-id', { type: 'string', demandOption: true })
          .positional('service', { type: 'string', demandOption: true, describe: "a name of the image's ai.backend.service-ports label" }),
        AGENTCTL_COMMAND_FLAGS.open,
      ),
    action<OpenArgs>((argv) =>
      withAgent(argv, async (api) => {
        if (argv.forward !== undefined && (!Number.isInteger(argv.forward) || argv.forward < 1 || argv.forward > 65535)) {
          throw new CtlError(`--forward ${argv.forward} is not a port number (1-65535)`, EXIT_USAGE);
        }
        const app = (await api.listKernels()).find((k) => k.id === argv.kernelId)?.services?.find((s) => s.name === argv.service);
        const token = randomBytes(16).toString('hex');
        const r = await api.startService(argv.kernelId, argv.service, { token });
        if (r.status === 'failed')
          throw new CtlError(`${argv.service} of kernel ${argv.kernelId} did not start: ${r.error ?? 'no reason given'}`);
        if (!app) throw new CtlError(`kernel ${argv.kernelId} has no app ${argv.service}`);
        const tokenPart = app.protocol === 'http' && r.status === 'started' ? `/?token=${token}` : '/';
        if (r.status === 'running')
          process.stderr.write(`agentctl: ${argv.service} was already running; it keeps the token it was started with\n`);
        const scheme = app.protocol === 'http' ? 'http' : 'tcp';
        if (argv.forward === undefined) {
          process.stdout.write(`${scheme}://${app.host}:${app.host_port}${scheme === 'http' ? tokenPart : ''}\n`);
          return 0;
        }
        const server = await forwardPort(argv.bind, argv.forward, app.host, app.host_port);
        process.stdout.write(`${scheme}://${argv.bind}:${argv.forward}${scheme === 'http' ? tokenPart : ''}\n`);
        process.stderr.write(`agentctl: forwarding ${argv.bind}:${argv.forward} to ${app.host}:${app.host_port}; Ctrl-C stops\n`);
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
        server.close();
        return 0;
      }),
    ),
  );
}
