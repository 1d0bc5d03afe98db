/**
 * The read and admin subcommands of agentctl: `agents` (from etcd), `ping`,
 * `kernels`, `destroy`, `reset`. Read commands take `--json`.
 */
import type { Argv } from 'yargs';
import { action, CtlError, EXIT_USAGE, formatAge, formatBytes, openEtcd, printJson, printTable, registeredAgents, withAgent, type GlobalArgs } from './common.js';

/** Registers the subcommands on the agentctl parser. */
export function infoCommands(y: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return y
    .command(
      'agents',
      'list the agents registered in etcd: status, address, slots, last heartbeat',
      {},
      action<GlobalArgs>(async (argv) => {
        const etcd = openEtcd(argv);
        try {
          const agents = await registeredAgents(etcd);
          if (argv.json) return printJson(agents);
          const now = Date.now() / 1000;
          printTable(
            ['ID', 'STATUS', 'ADDRESS', 'CPU', 'MEM', 'HEARTBEAT'],
            agents.map((a) => [
              a.id,
              a.status,
              a.addr ?? a.heartbeat?.addr ?? (a.ip ? `${a.ip} (port unknown)` : '-'),
              a.heartbeat?.cpu_slots === undefined ? '-' : String(a.heartbeat.cpu_slots),
              a.heartbeat?.mem_slots === undefined ? '-' : formatBytes(a.heartbeat.mem_slots * 1024 * 1024),
              typeof a.heartbeat?.time === 'number' ? `${formatAge(now - a.heartbeat.time)} ago` : '-',
            ]),
          );
        } finally {
          etcd.close();
        }
      }),
    )
    .command(
      'ping',
      'check that the agent answers, and how fast',
      {},
      action<GlobalArgs>((argv) =>
        withAgent(argv, async (api) => {
          const started = process.hrtime.bigint();
          const msg = `agentctl-${process.pid}`;
          const echo = await api.ping(msg);
          const ms = Number(process.hrtime.bigint() - started) / 1e6;
          if (echo !== msg) throw new Error(`the agent answered ${JSON.stringify(echo)} instead of echoing ${JSON.stringify(msg)}`);
          if (argv.json) printJson({ ok: true, ms });
          else process.stdout.write(`pong from ${api.endpoint} in ${ms.toFixed(1)} ms\n`);
        }),
      ),
    )
    .command(
      'kernels',
      "list the agent's kernels: id, image, state, cores, memory, age, idle time",
      {},
      action<GlobalArgs>((argv) =>
        withAgent(argv, async (api) => {
          const kernels = await api.listKernels();
          if (argv.json) return printJson(kernels);
          const now = Date.now() / 1000;
          printTable(
            ['ID', 'IMAGE', 'STATE', 'CORES', 'MEM', 'MEM USED', 'CPU TIME', 'AGE', 'IDLE'],
            kernels.map((k) => [
              k.id,
              k.image,
              k.state,
              k.cpu_set.join(','),
              `${k.mem_mib}MiB`,
              formatBytes(k.mem_cur_bytes),
              k.cpu_used === null ? '-' : `${(k.cpu_used / 1000).toFixed(1)}s`,
              formatAge(now - k.created_at),
              formatAge(now - k.last_used),
            ]),
          );
        }),
      ),
    )
    .command(
      'destroy <kernel-id>',
      'destroy a kernel and print its last stats',
      (c) => c.positional('kernel-id', { type: 'string', demandOption: true }).option('reason', { type: 'string', default: 'user-requested', describe: 'reason sent in kernel_terminated' }),
      action<GlobalArgs & { kernelId: string; reason: string }>((argv) =>
        withAgent(argv, async (api) => {
          const stats = await api.destroyKernel(argv.kernelId, argv.reason);
          if (argv.json) return printJson(stats);
          const s = stats ? ` (cpu ${stats.cpu_used} ms, peak memory ${formatBytes(stats.mem_max_bytes)})` : '';
          process.stdout.write(`destroyed ${argv.kernelId}${s}\n`);
        }),
      ),
    )
    .command(
      'reset',
      'destroy every kernel of the agent (reason agent-reset)',
      (c) => c.option('yes', { type: 'boolean', default: false, describe: 'required: confirms that every kernel goes' }),
      action<GlobalArgs & { yes: boolean }>((argv) => {
        if (!argv.yes) throw new CtlError('reset destroys every kernel of the agent; add --yes to confirm', EXIT_USAGE);
        return withAgent(argv, async (api) => {
          const before = await api.listKernels();
          await api.reset();
          process.stdout.write(`reset: ${before.length} kernel(s) destroyed\n`);
        });
      }),
    );
}
