/**
 * fleet-sim: N simulated agents in one process, each with the agent's real
 * etcd code (an EtcdStore on the cluster's endpoints, the lease-held
 * Registration, LiveSettings with its two watches, the Heartbeat with its
 * etcd record) and a real EventPublisher to one manager sink (an
 * EventReceiver); no Docker, no RPC. The etcd side's figures come from the
 * members' own /metrics (started with `--metrics extensive`).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdStore } from '../../src/adapters/etcd.js';
import { parseEndpoints } from '../../src/config/options.js';
import { EventPublisher } from '../../src/events/publisher.js';
import { EventReceiver, registerEventSink } from '../../src/events/receiver.js';
import { silentLogger } from '../../src/log.js';
import { Heartbeat } from '../../src/services/heartbeat.js';
import { LiveSettings } from '../../src/services/live-settings.js';
import { Registration } from '../../src/services/registration.js';
import { msgpackCodec } from '../../src/wire/codec.js';
import { parsePrometheus } from '../helpers/prometheus.js';
import { waitRealTime } from '../helpers/real-time.js';

export interface SimOptions {
  agents: number;
  /** Client endpoints of the cluster (comma-separated) and each member's metrics URL. */
  etcdAddr: string;
  metricsUrls: string[];
  namespace: string;
  heartbeatSec: number;
  leaseTtlSec: number;
  /** Seconds of steady state measured. */
  measureSec: number;
  progress?: (line: string) => void;
}

export interface SimReport {
  agents: number;
  heartbeatSec: number;
  leaseTtlSec: number;
  registerAllSec: number;
  etcdRequestsPerSec: number;
  etcdUnaryP99Ms: number | null;
  settingChangeToAllAgentsMs: number;
  watchEventsPerChangePerAgent: number;
  heartbeatBytesPerAgentPerMin: number;
  sinkEventsPerSec: number;
  agentCpuMsPerAgentPerSec: number;
}

async function etcdFigures(urls: string[]): Promise<{ handled: number; buckets: Map<number, number> }> {
  let handled = 0;
  const buckets = new Map<number, number>();
  for (const url of urls) {
    const text = await (await fetch(url)).text();
    for (const s of parsePrometheus(text).samples) {
      if (s.name === 'grpc_server_handled_total' && s.labels.grpc_type === 'unary') handled += s.value;
      if (s.name === 'grpc_server_handling_seconds_bucket' && s.labels.grpc_type === 'unary') {
        const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
        buckets.set(le, (buckets.get(le) ?? 0) + s.value);
      }
    }
  }
  return { handled, buckets };
}

function p99(before: Map<number, number>, after: Map<number, number>): number | null {
  const les = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  if (total <= 0) return null;
  for (const le of les) if ((after.get(le) ?? 0) - (before.get(le) ?? 0) >= 0.99 * total) return le === Infinity ? null : le * 1000;
  return null;
}

/** Runs the simulation and tears it down; throws when an agent does not register or a change does not reach every agent. */
export async function simulate(o: SimOptions): Promise<SimReport> {
  const say = o.progress ?? (() => undefined);
  const log = silentLogger();
  const endpoints = parseEndpoints(o.etcdAddr, '--etcd-addr');
  const admin = new EtcdStore(endpoints, o.namespace, log);
  const receiver = await EventReceiver.bind('tcp://127.0.0.1:*');
  let sinkEvents = 0;
  void (async () => {
    for await (const _ of receiver) sinkEvents++;
  })();
  await admin.put('config/agent/heartbeat_interval', String(o.heartbeatSec));
  await admin.put('config/agent/registration_lease_ttl', String(o.leaseTtlSec));
  const unregister = await registerEventSink(admin, 'sim-manager', receiver.hostPort);
  const applied = new Map<string, number>();
  let watchEvents = 0;
  let heartbeatBytes = 0;
  const stops: Array<() => Promise<void>> = [];
  /** Each agent's second beat: the measuring starts once every agent is past its start. */
  const settling: Array<Promise<void>> = [];
  try {
    const t0 = Date.now();
    for (let i = 0; i < o.agents; i++) {
      const id = `i-sim-${i}`;
      const store = new EtcdStore(endpoints, o.namespace, log);
      const reg = new Registration(store, id, log);
      const settings = new LiveSettings(store, id, log, () => {
        watchEvents++;
        applied.set(id, Date.now());
      });
      const publisher = new EventPublisher({ agentId: id, codec: msgpackCodec, log, queueLimit: 100 });
      publisher.setSink(`tcp://${receiver.hostPort}`);
      const s = await settings.load();
      await reg.starting('198.18.0.1', `tcp://198.18.0.1:${7000 + i}`, s.registrationLeaseTtlSec);
      const beat = new Heartbeat(
        {
          log,
          codec: msgpackCodec,
          emit: (name, args) => {
            heartbeatBytes += msgpackCodec.encode(args).length + name.length + id.length;
            return publisher.emit(name, args);
          },
          identity: () => ({ ip: '198.18.0.1', region: 'sim', addr: `tcp://198.18.0.1:${7000 + i}` }),
          resources: () => ({ cpuSlots: 8, memSlotsMiB: 32768, gpuSlots: 0 }),
          listImages: async () => [],
          sample: async () => ({
            node: {
              cpu_pct: 10,
              mem_total_bytes: 34359738368,
              mem_available_bytes: 17179869184,
              disk_total_bytes: 1e12,
              disk_free_bytes: 5e11,
            },
            kernels: {},
          }),
          record: (b) => reg.record('heartbeat', JSON.stringify(b)),
        },
        s.heartbeatIntervalSec * 1000,
      );
      await settings.watch();
      beat.start();
      settling.push(beat.afterBeats(2));
      await reg.running();
      stops.push(async () => {
        await beat.stop();
        await settings.stop();
        await reg.stopChecking();
        await reg.deregister().catch(() => undefined);
        await publisher.close(0);
        store.close();
      });
      if ((i + 1) % 50 === 0) say(`${i + 1} agents registered`);
    }
    const registerAllSec = (Date.now() - t0) / 1000;
    say(`all ${o.agents} registered in ${registerAllSec.toFixed(1)} s; measuring ${o.measureSec} s`);
    await Promise.all(settling); // every agent past its first beats: the start-up burst is out of the figures
    const before = await etcdFigures(o.metricsUrls);
    const cpu0 = process.cpuUsage();
    const sink0 = sinkEvents;
    const bytes0 = heartbeatBytes;
    const m0 = Date.now();
    await waitRealTime(o.measureSec * 1000, 'the measuring window: the figures are rates over it');
    const elapsed = (Date.now() - m0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const after = await etcdFigures(o.metricsUrls);
    const bytes = heartbeatBytes - bytes0;
    const sinkRate = (sinkEvents - sink0) / elapsed;
    // one settings change: how long until every agent applied it, and how many reloads each made
    applied.clear();
    const events0 = watchEvents;
    const c0 = Date.now();
    await admin.put('config/agent/exec_timeout', '77');
    const deadline = Date.now() + 60_000;
    while (applied.size < o.agents) {
      if (Date.now() > deadline) throw new Error(`the change reached ${applied.size} of ${o.agents} agents in 60 s`);
      await sleep(20);
    }
    const changeMs = Math.max(...applied.values()) - c0;
    return {
      agents: o.agents,
      heartbeatSec: o.heartbeatSec,
      leaseTtlSec: o.leaseTtlSec,
      registerAllSec: Math.round(registerAllSec * 10) / 10,
      etcdRequestsPerSec: Math.round((after.handled - before.handled) / elapsed),
      etcdUnaryP99Ms: p99(before.buckets, after.buckets),
      settingChangeToAllAgentsMs: changeMs,
      watchEventsPerChangePerAgent: (watchEvents - events0) / o.agents,
      heartbeatBytesPerAgentPerMin: Math.round((bytes / o.agents / elapsed) * 60),
      sinkEventsPerSec: Math.round(sinkRate * 10) / 10,
      agentCpuMsPerAgentPerSec: Math.round(((cpu.user + cpu.system) / 1000 / o.agents / elapsed) * 100) / 100,
    };
  } finally {
    await Promise.all(stops.map((s) => s()));
    await unregister().catch(() => undefined);
    receiver.close();
    admin.close();
  }
}
