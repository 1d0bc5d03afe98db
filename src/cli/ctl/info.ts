/**
 * The read and admin subcommands of agentctl: `agents` (from etcd), `ping`,
 * `node`, `kernels`, `destroy`, `reset`. Read commands take `--json`.
 */
import type { Argv } from 'yargs';
import { callosumPing } from './modern.js';
import {
  action,
  CtlError,
  EXIT_USAGE,
  formatAge,
  formatBytes,
  openEtcd,
  printJson,
  printTable,
  registeredAgents,
  withAgent,
  type GlobalArgs,
} from './common.js';
import { addFlags, AGENTCTL_COMMAND_FLAGS } from '../flags.js';

/** Registers the subcommands on the agentctl parser. */
export function infoCommands(y: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return y
    .command(
      'agents',
      'list the agents registered in etcd: status (draining while a drain is in force), address, slots, last heartbeat',
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
              a.draining && a.status === 'running' ? 'draining' : a.status,
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
        argv.callosum
          ? callosumPing(argv)
          : withAgent(argv, async (api) => {
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
      'node',
      "the node's CPU, memory and disk, each GPU (and the kernel holding it), and each kernel's CPU time and memory (from cgroups)",
      {},
      action<GlobalArgs>((argv) =>
        withAgent(argv, async (api) => {
          const stats = await api.nodeStats();
          if (argv.json) return printJson(stats);
          const n = stats.node;
          process.stdout.write(
            `cpu ${n.cpu_pct.toFixed(1)}%  memory ${formatBytes(n.mem_total_bytes - n.mem_available_bytes)} used of ${formatBytes(n.mem_total_bytes)}` +
              `  scratch disk ${formatBytes(n.disk_total_bytes - n.disk_free_bytes)} used of ${formatBytes(n.disk_total_bytes)}\n`,
          );
          process.stdout.write(`gpus: ${stats.gpu_path}, ${stats.gpus.length} usable\n`);
          if (stats.gpus.length) {
            printTable(
              ['GPU', 'NAME', 'NUMA', 'MEM USED', 'MEM', 'UTIL', 'KERNEL'],
              stats.gpus.map((g) => [
                String(g.index),
                g.name,
                g.numa_node === null ? 'any' : String(g.numa_node),
                formatBytes(g.mem_used_bytes),
                formatBytes(g.mem_total_bytes),
                g.util_pct === null ? '-' : `${g.util_pct}%`,
                g.kernel_id ?? '-',
              ]),
            );
          }
          const kernels = Object.entries(stats.kernels);
          if (!kernels.length) return;
          printTable(
            ['KERNEL', 'CPU TIME', 'MEM', 'MEM PEAK', 'NET RX', 'NET TX', 'SCRATCH'],
            kernels.map(([id, k]) => [
              id,
              `${(k.cpu_used / 1000).toFixed(1)}s`,
              formatBytes(k.mem_cur_bytes),
              formatBytes(k.mem_max_bytes),
              formatBytes(k.net_rx_bytes),
              formatBytes(k.net_tx_bytes),
              formatBytes(k.io_cur_scratch_size),
            ]),
          );
        }),
      ),
    )
    .command(
      'kernels',
      "list the agent's kernels: id, image, state, cores, memory, age, idle time, apps (name:host port(state))",
      {},
      action<GlobalArgs>((argv) =>
        withAgent(argv, async (api) => {
          const kernels = await api.listKernels();
          if (argv.json) return printJson(kernels);
          const now = Date.now() / 1000;
          printTable(
            ['ID', 'IMAGE', 'STATE', 'CORES', 'MEM', 'MEM USED', 'CPU TIME', 'AGE', 'IDLE', 'APPS'],
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
              (k.services ?? []).map((a) => `${a.name}:${a.host_port}(${a.state})`).join(',') || '-',
            ]),
          );
        }),
      ),
    )
    .command(
      'destroy <kernel-id>',
      'destroy a kernel and print its last stats',
      (c) => addFlags(c.positional('kernel-id', { type: 'string', demandOption: true }), AGENTCTL_COMMAND_FLAGS.destroy),
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
      (c) => addFlags(c, AGENTCTL_COMMAND_FLAGS.reset),
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
