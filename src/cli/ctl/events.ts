/**
 * `agentctl events`: binds an event sink (PULL), registers it in etcd as the
 * manager (`nodes/manager`, `nodes/manager/event_addr`) so that the agents of
 * the namespace send their events to it, and prints each event as it comes,
 * one line each or JSON lines with `--json`. On exit it removes the two keys,
 * each only if it still points at this sink. A one-node setup needs no
 * manager to watch its agent.
 */
import os from 'node:os';
import type { Argv } from 'yargs';
import { decodeHeartbeatImages, EventReceiver, registerEventSink, type AgentEvent } from '../../events/receiver.js';
import { errorMessage } from '../../errors.js';
import { action, CtlError, openEtcd, type GlobalArgs } from './common.js';
import { addFlags, AGENTCTL_COMMAND_FLAGS } from '../flags.js';

interface EventsArgs extends GlobalArgs {
  bind: string;
  advertise?: string;
  managerId?: string;
  count?: number;
}

/** Registers `events` on the agentctl parser. */
export function eventsCommand(y: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return y.command(
    'events',
    "receive the agents' events as their manager and print them as they come",
    (c) => addFlags(c, AGENTCTL_COMMAND_FLAGS.events),
    action<EventsArgs>(async (argv) => {
      const receiver = await EventReceiver.bind(argv.bind).catch((err: unknown) => {
        throw new CtlError(errorMessage(err));
      });
      const etcd = openEtcd(argv);
      const addr = argv.advertise ?? receiver.hostPort;
      if (/^(0\.0\.0\.0|\[::\]):/.test(addr)) {
        receiver.close();
        etcd.close();
        throw new CtlError(`the sink is bound to every interface (${addr}); give --advertise HOST:PORT that the agents can reach`);
      }
      const managerId = argv.managerId ?? `agentctl-${os.hostname()}-${process.pid}`;
      let unregister: () => Promise<void>;
      try {
        unregister = await registerEventSink(etcd, managerId, addr);
      } catch (err) {
        receiver.close();
        etcd.close();
        throw new CtlError(`cannot register the event sink in etcd at ${etcd.where} (${errorMessage(err)}); fix --etcd-addr`);
      }
      process.stderr.write(`agentctl: receiving events at ${addr} as manager ${managerId} (namespace ${argv.namespace}); Ctrl-C to stop\n`);
      const stop = () => receiver.close();
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      let seen = 0;
      try {
        for await (const ev of receiver) {
          process.stdout.write((argv.json ? JSON.stringify(eventJson(ev)) : eventLine(ev)) + '\n');
          if (argv.count !== undefined && ++seen >= argv.count) break;
        }
      } finally {
        receiver.close();
        await unregister().catch((err: unknown) =>
          process.stderr.write(`agentctl: could not remove the sink from etcd: ${errorMessage(err)}\n`),
        );
        etcd.close();
      }
    }),
  );
}

/** The agent_info of a heartbeat, with its images decoded. */
function agentInfo(ev: AgentEvent): Record<string, unknown> | null {
  const info = ev.args[0];
  if (ev.name !== 'instance_heartbeat' || typeof info !== 'object' || info === null) return null;
  const { images, ...rest } = info as Record<string, unknown>;
  return { ...rest, images: decodeHeartbeatImages(images).map(([name]) => name) };
}

function eventJson(ev: AgentEvent): Record<string, unknown> {
  const info = agentInfo(ev);
  return { time: new Date(ev.receivedAt).toISOString(), agent: ev.agentId, event: ev.name, args: info ? [info] : ev.args };
}

/** One line: time, agent, event, and its args in short. */
export function eventLine(ev: AgentEvent): string {
  const time = new Date(ev.receivedAt).toISOString().slice(11, 23);
  const info = agentInfo(ev);
  let detail: string;
  if (info) {
    detail = `addr=${String(info.addr)} cpu_slots=${String(info.cpu_slots)} mem_slots=${String(info.mem_slots)} images=${(info.images as string[]).join(',') || '-'}`;
  } else if (ev.name === 'kernel_terminated') {
    const [id, reason] = ev.args;
    detail = `${String(id)} reason=${String(reason)}`;
  } else {
    detail = ev.args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ');
  }
  return `${time} ${ev.agentId} ${ev.name}${detail ? ' ' + detail : ''}`;
}
