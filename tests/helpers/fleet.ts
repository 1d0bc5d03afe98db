/**
 * Test hosts in network namespaces: a fleet of `ip netns` hosts joined by a
 * bridge (itself in a namespace of its own, so nothing is added to the
 * machine's bridges), with addresses from the benchmarking range
 * 198.18.0.0/15 (RFC 2544, never a real network's), each running one
 * process: etcd members, agents (RPC bound on their host's address,
 * `--agent-host-override` set to it). The manager's side is the process
 * that builds the fleet: one veth of the fleet's own in the machine's
 * namespace carries the manager's address (`.1`), so an `EventReceiver`, a
 * sink or `AgentClient`s of that process reach every host.
 *
 * Every name carries a prefix of the fleet's own; everything is torn down
 * by `close()` (the tests register it with onCleanup, so even when a test
 * fails), and `makeFleet` refuses to run without root or `ip netns`.
 * The agents share the machine's one Docker engine (each takes only the
 * containers of its own agent id) and its cores: the figures of a fleet on
 * one machine are about the control plane, not kernels.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Etcd3, type Namespace } from 'etcd3';
import { EtcdStore } from '../../src/adapters/etcd.js';
import { parseEndpoints } from '../../src/config/options.js';
import { silentLogger } from '../../src/log.js';
import { EventReceiver, registerEventSink, type AgentEvent } from '../../src/events/receiver.js';
import { eventually, onCleanup, uniqueName } from './env.js';

export interface FleetHost {
  /** The namespace's name. */
  ns: string;
  ip: string;
  proc: ChildProcess | null;
  /** What the process wrote to stderr. */
  stderr: string;
}

export interface Fleet {
  prefix: string;
  /** The manager's address (in the machine's namespace). */
  managerIp: string;
  hosts: FleetHost[];
  /** Runs a command in a host's namespace (its one process); stderr is kept. */
  run(host: FleetHost, cmd: string, args: string[]): ChildProcess;
  /** SIGKILLs a host's process and waits for it. */
  kill(host: FleetHost): Promise<void>;
  /** Kills every process, deletes every namespace and link; never throws. */
  close(): Promise<void>;
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Throws unless this process can make network namespaces. */
export function requireNetns(): void {
  if (process.getuid?.() !== 0) throw new Error('the fleet harness needs root (it makes network namespaces)');
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
  } catch {
    throw new Error('the fleet harness needs `ip netns` (iproute2)');
  }
}

/** Builds `count` hosts on one bridge, in a /24 of 198.18.0.0/15 picked at random. */
export async function makeFleet(count: number): Promise<Fleet> {
  requireNetns();
  if (count < 1 || count > 200) throw new RangeError('a fleet has 1 to 200 hosts');
  const prefix = `fl${randomBytes(2).toString('hex')}`;
  const net = `198.${18 + (randomBytes(1)[0]! & 1)}.${1 + (randomBytes(1)[0]! % 250)}`;
  const bridgeNs = `${prefix}-br`;
  const made: string[] = [];
  const hosts: FleetHost[] = [];
  let managerLink = false;
  const close = async () => {
    for (const h of hosts) {
      if (h.proc && h.proc.exitCode === null && h.proc.signalCode === null) {
        h.proc.kill('SIGKILL');
        await once(h.proc, 'exit').catch(() => undefined);
      }
    }
    if (managerLink) {
      try {
        ip(['link', 'del', `${prefix}m`]); // its peer goes with it
      } catch {
        // already gone
      }
    }
    for (const ns of made.reverse()) {
      try {
        ip(['netns', 'del', ns]); // its veth ends go with it
      } catch {
        // already gone
      }
    }
  };
  try {
    ip(['netns', 'add', bridgeNs]);
    made.push(bridgeNs);
    ip(['-n', bridgeNs, 'link', 'set', 'lo', 'up']);
    ip(['-n', bridgeNs, 'link', 'add', `${prefix}b`, 'type', 'bridge']);
    ip(['-n', bridgeNs, 'link', 'set', `${prefix}b`, 'up']);
    // the manager's side: a veth in the machine's namespace
    ip(['link', 'add', `${prefix}m`, 'type', 'veth', 'peer', 'name', `${prefix}q`]);
    managerLink = true;
    ip(['link', 'set', `${prefix}q`, 'netns', bridgeNs]);
    ip(['-n', bridgeNs, 'link', 'set', `${prefix}q`, 'master', `${prefix}b`, 'up']);
    ip(['addr', 'add', `${net}.1/24`, 'dev', `${prefix}m`]);
    ip(['link', 'set', `${prefix}m`, 'up']);
    for (let i = 0; i < count; i++) {
      const ns = `${prefix}-h${i}`;
      ip(['netns', 'add', ns]);
      made.push(ns);
      const [inner, outer] = [`${prefix}h${i}`, `${prefix}p${i}`];
      ip(['link', 'add', inner, 'type', 'veth', 'peer', 'name', outer]);
      ip(['link', 'set', inner, 'netns', ns]);
      ip(['link', 'set', outer, 'netns', bridgeNs]);
      ip(['-n', bridgeNs, 'link', 'set', outer, 'master', `${prefix}b`, 'up']);
      const addr = `${net}.${10 + i}`;
      ip(['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', inner]);
      ip(['-n', ns, 'link', 'set', inner, 'up']);
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      hosts.push({ ns, ip: addr, proc: null, stderr: '' });
    }
  } catch (err) {
    await close();
    throw new Error(`cannot build the fleet's namespaces: ${(err as { stderr?: Buffer }).stderr?.toString().trim() || String(err)}`, {
      cause: err,
    });
  }
  return {
    prefix,
    managerIp: `${net}.1`,
    hosts,
    run(host, cmd, args) {
      const p = spawn('ip', ['netns', 'exec', host.ns, cmd, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      host.proc = p;
      host.stderr = '';
      p.stderr!.on('data', (d: Buffer) => {
        host.stderr += d.toString();
        if (host.stderr.length > 4_000_000) host.stderr = host.stderr.slice(-2_000_000);
      });
      return p;
    },
    async kill(host) {
      const p = host.proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      p.kill('SIGKILL');
      await once(p, 'exit');
    },
    close,
  };
}

/** Starts three etcd members on the first three hosts (client port 2379, peer 2380); returns `--etcd-addr` and their data dirs' clean-up. */
export async function fleetEtcd(
  fleet: Fleet,
  members: FleetHost[],
): Promise<{ addr: string; start(h: FleetHost): void; remove(): Promise<void> }> {
  const dirs = new Map<FleetHost, string>();
  for (const h of members) dirs.set(h, await fs.mkdtemp(path.join(os.tmpdir(), `${fleet.prefix}-etcd-`)));
  const initial = members.map((h, i) => `e${i}=http://${h.ip}:2380`).join(',');
  const start = (h: FleetHost) => {
    const i = members.indexOf(h);
    fleet.run(h, '/usr/bin/etcd', [
      '--name',
      `e${i}`,
      '--data-dir',
      dirs.get(h)!,
      '--listen-client-urls',
      `http://${h.ip}:2379`,
      '--advertise-client-urls',
      `http://${h.ip}:2379`,
      '--listen-peer-urls',
      `http://${h.ip}:2380`,
      '--initial-advertise-peer-urls',
      `http://${h.ip}:2380`,
      '--initial-cluster',
      initial,
      '--initial-cluster-token',
      fleet.prefix,
      '--initial-cluster-state',
      'new',
      '--heartbeat-interval',
      '100',
      '--election-timeout',
      '600',
      '--log-level',
      'error',
    ]);
  };
  for (const h of members) start(h);
  return {
    addr: members.map((h) => `${h.ip}:2379`).join(','),
    start,
    remove: async () => {
      for (const d of dirs.values()) await fs.rm(d, { recursive: true, force: true });
    },
  };
}

/** The test manager of a fleet: an EventReceiver on the manager's address, registered in etcd, collecting every event. */
export async function fleetManager(fleet: Fleet, etcd: EtcdStore): Promise<{ events: AgentEvent[]; close(): Promise<void> }> {
  const receiver = await EventReceiver.bind(`tcp://${fleet.managerIp}:*`);
  const events: AgentEvent[] = [];
  void (async () => {
    for await (const e of receiver) events.push(e);
  })();
  const unregister = await registerEventSink(etcd, `mgr-${fleet.prefix}`, receiver.hostPort);
  return {
    events,
    close: async () => {
      await unregister().catch(() => undefined);
      receiver.close();
    },
  };
}

/**
 * Starts the agent CLI on a host: RPC on the host's address port 6001,
 * `--agent-host-override` set to it, no metrics file; kernels (containers of
 * the machine's one Docker) are reached at the manager's address.
 */
export function fleetAgent(
  fleet: Fleet,
  host: FleetHost,
  o: { agentBin: string; etcdAddr: string; namespace: string; agentId: string; scratch: string },
): ChildProcess {
  return fleet.run(host, process.execPath, [
    o.agentBin,
    '--etcd-addr',
    o.etcdAddr,
    '--namespace',
    o.namespace,
    '--agent-id',
    o.agentId,
    '--agent-port',
    '6001',
    '--bind-host',
    host.ip,
    '--agent-host-override',
    host.ip,
    '--scratch-root',
    o.scratch,
    '--metrics',
    '',
    '--log-format',
    'json',
    // kernels are containers of the machine's Docker, their ports published in its namespace: reached through the manager's veth
    '--kernel-host-override',
    fleet.managerIp,
  ]);
}

/** SIGKILLs the host of the etcd member that leads now (asked through `store`); returns it. */
export async function killEtcdLeader(fleet: Fleet, members: FleetHost[], store: EtcdStore): Promise<FleetHost> {
  const leader = (await store.memberStatuses()).find((s) => s.ok && s.memberId === s.leader);
  const host = members.find((h) => leader && h.ip === leader.endpoint.split(':')[0]);
  if (!host) throw new Error('no etcd member says it leads');
  await fleet.kill(host);
  return host;
}

/** Whether an agent host logged that the setting `key` changed and applied. */
export function appliedSetting(host: FleetHost, key: string): boolean {
  return host.stderr.split('\n').some((l) => l.includes('setting changed; applied') && l.includes(`"key":"${key}"`));
}

/** A fleet ready for agents: three etcd hosts, `agents` empty agent hosts, a namespace with `settings` put, an etcd store and the test manager. */
export interface ReadyFleet {
  fleet: Fleet;
  etcdHosts: FleetHost[];
  agentHosts: FleetHost[];
  etcdAddr: string;
  namespace: string;
  ns: Namespace;
  store: EtcdStore;
  manager: Awaited<ReturnType<typeof fleetManager>>;
}

/** Builds a fleet with its etcd and manager; all of it is torn down by the test clean-ups (onCleanup), last first. */
export async function readyFleet(agents: number, settings: Record<string, string>): Promise<ReadyFleet> {
  const fleet = await makeFleet(agents + 3);
  const etcdHosts = fleet.hosts.slice(0, 3);
  const cluster = await fleetEtcd(fleet, etcdHosts);
  onCleanup(async () => {
    await fleet.close();
    await cluster.remove();
  });
  const namespace = uniqueName('fleet');
  const raw = new Etcd3({ hosts: cluster.addr.split(',').map((a) => `http://${a}`), dialTimeout: 2000 });
  onCleanup(() => raw.close());
  const ns = raw.namespace(`/sorna/${namespace}/`);
  const [first, ...rest] = Object.entries(settings);
  await eventually(
    'the etcd cluster in the namespaces',
    async () => {
      if (first) await ns.put(`config/agent/${first[0]}`).value(first[1]);
      return true;
    },
    30_000,
    200,
  );
  for (const [k, v] of rest) await ns.put(`config/agent/${k}`).value(v);
  const store = new EtcdStore(parseEndpoints(cluster.addr, '--etcd-addr'), namespace, silentLogger());
  onCleanup(() => store.close());
  const manager = await fleetManager(fleet, store);
  onCleanup(manager.close);
  return { fleet, etcdHosts, agentHosts: fleet.hosts.slice(3), etcdAddr: cluster.addr, namespace, ns, store, manager };
}
