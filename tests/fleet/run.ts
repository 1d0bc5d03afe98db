/**
 * The fleet command: `npm run fleet -- [--agents N] [--ttl S] [--interval S]`
 * (needs root and `ip netns`). Builds N agent hosts and three etcd hosts in
 * network namespaces (tests/helpers/fleet.ts, 198.18.0.0/15), a test
 * manager in this process, and reports as JSON: how long until every agent
 * started and registered, heartbeats per agent over 5 intervals, RPC to each
 * agent by its address, a kernel created and run on each agent through its
 * address, how long a killed agent host stays registered (vs. the lease
 * TTL), whether beats go on and a setting reaches every agent after the
 * etcd leader is killed, and whether the killed agent, restarted,
 * re-adopts its kernel. Everything is torn down at the end, on
 * failure and on Ctrl-C. The agents share this machine's cores and Docker:
 * the figures are about the control plane.
 */
import { methods } from '../../src/rpc/methods.js';
import { AgentClient } from '../../src/rpc/client.js';
import { AGENT_BIN, eventually, onCleanup, removeContainersOf, runCleanups, tempScratch } from '../helpers/env.js';
import { SMALL_KERNEL, runCode } from '../soak/drive.js';
import { waitRealTime } from '../helpers/real-time.js';
import { appliedSetting, fleetAgent, killEtcdLeader, readyFleet, requireNetns } from '../helpers/fleet.js';

function parse(argv: string[]): { agents: number; ttl: number; interval: number } {
  const out = { agents: 8, ttl: 5, interval: 1 };
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i]!.replace(/^--/, '');
    const n = Number(argv[i + 1]);
    if (!(flag in out) || !Number.isFinite(n) || n <= 0)
      throw new Error(`usage: npm run fleet -- [--agents N] [--ttl S] [--interval S] (got ${argv[i]} ${argv[i + 1]})`);
    out[flag as keyof typeof out] = n;
  }
  if (out.agents > 100) throw new Error('--agents: at most 100 on one machine');
  return out;
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  requireNetns();
  const say = (line: string) => console.error(`[${new Date().toISOString()}] ${line}`);
  const sec = (t: number) => Math.round((Date.now() - t) / 100) / 10;
  const { fleet, etcdHosts, agentHosts, etcdAddr, namespace, ns, store, manager } = await readyFleet(args.agents, {
    heartbeat_interval: String(args.interval),
    registration_lease_ttl: String(args.ttl),
  });
  say(`fleet ${fleet.prefix}: etcd ${etcdAddr}, ${args.agents} agents on ${agentHosts[0]!.ip}.., manager ${fleet.managerIp}`);
  const seen = (name: string, id: string, after = 0) =>
    manager.events.filter((e) => e.name === name && e.agentId === id && e.receivedAt >= after).length;
  const registered = async () => (await ns.getAll().prefix('nodes/agents/').keys()).filter((k) => !k.slice(13).includes('/')).length;

  const ids = agentHosts.map((_, i) => `i-${fleet.prefix}-${i}`);
  const t0 = Date.now();
  const scratch = await Promise.all(agentHosts.map(() => tempScratch()));
  for (const [i, h] of agentHosts.entries())
    fleetAgent(fleet, h, { agentBin: AGENT_BIN, etcdAddr, namespace, agentId: ids[i]!, scratch: scratch[i]! });
  await eventually('every instance_started', () => ids.every((id) => seen('instance_started', id) > 0), 300_000, 200);
  const startedSec = sec(t0);
  await eventually('every registration', async () => (await registered()) === ids.length, 60_000, 200);
  const registeredSec = sec(t0);
  say(`all ${ids.length} started in ${startedSec} s, registered in ${registeredSec} s`);

  const w0 = Date.now();
  await waitRealTime(5 * args.interval * 1000, 'the figure is the heartbeats each agent sends in 5 intervals');
  const beats = ids.map((id) => seen('instance_heartbeat', id, w0));
  const clients = agentHosts.map((h) => new AgentClient(`tcp://${h.ip}:6001`, { timeoutMs: 5000 }));
  onCleanup(() => clients.forEach((c) => c.close()));
  const pings = (
    await Promise.all(
      clients.map((c, i) =>
        c.call(methods.ping, `p${i}`).then(
          (v) => v === `p${i}`,
          () => false,
        ),
      ),
    )
  ).filter(Boolean).length;

  // a kernel on each agent, created and run through that agent's address (one at a time: the agents share this machine's cores)
  const kernelIds = ids.map((id) => `${id}-k`);
  for (const id of ids) onCleanup(() => removeContainersOf(id));
  const c0 = Date.now();
  let ran = 0;
  for (const [i, c] of clients.entries()) {
    await c.callWithTimeout(120_000, methods.create_kernel, kernelIds[i]!, SMALL_KERNEL);
    if ((await runCode(c, kernelIds[i]!, `print(${i} * 7)`)) === `${i * 7}\n`) ran++;
  }
  const kernelsSec = sec(c0);
  say(`a kernel created and run on each agent: ${ran}/${ids.length} in ${kernelsSec} s`);

  await fleet.kill(agentHosts[0]!);
  const k0 = Date.now();
  await eventually('the killed host to drop out', async () => (await registered()) === ids.length - 1, 10 * args.ttl * 1000, 100);
  const expirySec = sec(k0);
  say(`killed ${ids[0]}: dropped out of etcd after ${expirySec} s (lease TTL ${args.ttl} s)`);

  await killEtcdLeader(fleet, etcdHosts, store);
  const l0 = Date.now();
  await eventually(
    'a write after the election',
    async () => {
      await ns.put('config/agent/exec_timeout').value('9');
      return true;
    },
    60_000,
    100,
  );
  const writableSec = sec(l0);
  await eventually(
    'the setting at every live agent',
    () => agentHosts.slice(1).every((h) => appliedSetting(h, 'exec_timeout')),
    60_000,
    100,
  );
  const settingSec = sec(l0);
  await waitRealTime(3 * args.interval * 1000, 'the figure is the beats each live agent sends in the intervals after the leader kill');
  const beatsAfterLeader = ids.slice(1).map((id) => seen('instance_heartbeat', id, l0));

  // the killed agent restarted on its host: it starts, registers and re-adopts its kernel, which still runs code
  fleetAgent(fleet, agentHosts[0]!, { agentBin: AGENT_BIN, etcdAddr, namespace, agentId: ids[0]!, scratch: scratch[0]! });
  const r0 = Date.now();
  await eventually('the restarted agent', () => seen('instance_started', ids[0]!, r0) > 0, 120_000, 100);
  await eventually('every registration again', async () => (await registered()) === ids.length, 60_000, 200);
  const restartSec = sec(r0);
  const readopted =
    (await clients[0]!.call(methods.list_kernels)).some((k) => k.id === kernelIds[0]) &&
    (await runCode(clients[0]!, kernelIds[0]!, 'print(6 * 8)')) === '48\n';
  say(`restarted ${ids[0]}: registered again in ${restartSec} s, kernel re-adopted and running: ${readopted}`);
  console.log(
    JSON.stringify(
      {
        agents: ids.length,
        cores: (await import('node:os')).cpus().length,
        heartbeatIntervalSec: args.interval,
        leaseTtlSec: args.ttl,
        startedSec,
        registeredSec,
        heartbeatsPerAgentIn5Intervals: { min: Math.min(...beats), max: Math.max(...beats) },
        rpcAnswered: `${pings}/${ids.length}`,
        kernelsCreatedAndRun: `${ran}/${ids.length}`,
        kernelsSec,
        killedAgentExpirySec: expirySec,
        leaderKill: {
          writableAfterSec: writableSec,
          settingAtEveryAgentSec: settingSec,
          minBeatsPerAgentSinceKill: Math.min(...beatsAfterLeader),
          sinceKillSec: sec(l0),
        },
        restartedAgent: { registeredAgainSec: restartSec, kernelReadoptedAndRunning: readopted },
      },
      null,
      2,
    ),
  );
  if (pings !== ids.length || ran !== ids.length || !readopted)
    throw new Error(`the fleet did not hold up: RPC ${pings}/${ids.length}, kernels ${ran}/${ids.length}, re-adopted ${readopted}`);
}

let code = 0;
process.on('SIGINT', () => void runCleanups().then(() => process.exit(130)));
try {
  await main();
} catch (err) {
  console.error(`fleet: ${err instanceof Error ? err.message : String(err)}`);
  code = 1;
} finally {
  await runCleanups();
}
process.exit(code);
