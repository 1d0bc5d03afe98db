/**
 * DemandShare follows the cluster's pending demand (`config/agent/pool/demand`)
 * and the set of live agents (their lease-held registrations with the
 * capacity in their heartbeat records), and keeps this node's share of the
 * demand (services/demand.ts) for the warm pool. Every agent computes the
 * same split from the same etcd state, so no agent talks to another. It
 * re-splits every pool check interval, so a changed membership or demand
 * applies within one; each changed decision is logged once with its inputs.
 */
import type { EtcdStore } from '../adapters/etcd.js';
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import { AGENTS_PREFIX, agentFieldKey, DEMAND_KEY } from '../config/etcd-keys.js';
import { DemandWindow, parseDemand, splitDemand, type AgentCapacity, type Demand } from './demand.js';

const MIB = 1024 * 1024;

/** The capacity of each agent registered `running`, from the `nodes/agents/` tree (free cores: slots less kernels; free memory: MemAvailable). */
export function liveAgents(tree: Record<string, string>): AgentCapacity[] {
  const out: AgentCapacity[] = [];
  for (const [id, state] of Object.entries(tree)) {
    if (id.includes('/') || state !== 'running') continue;
    let freeCores = 0;
    let freeMemMiB = 0;
    try {
      const beat = JSON.parse(tree[agentFieldKey(id, 'heartbeat').slice(AGENTS_PREFIX.length)] ?? 'null') as {
        cpu_slots?: number;
        kernels?: number;
        node?: { mem_available_bytes?: number } | null;
      } | null;
      freeCores = Math.max(0, (beat?.cpu_slots ?? 0) - (beat?.kernels ?? 0));
      freeMemMiB = Math.floor((beat?.node?.mem_available_bytes ?? 0) / MIB);
    } catch {
      // no or a bad record: no known room, the agent gets a share only if nobody has room
    }
    out.push({ id, freeCores, freeMemMiB });
  }
  return out;
}

export interface DemandShareDeps {
  etcd: EtcdStore;
  agentId: string;
  log: Logger;
  /** Seconds between passes and of the averaging window (the pool's check_interval and demand_window). */
  timing(): { intervalSec: number; windowSec: number };
  /** Called when this node's share changed (the pool resizes). */
  onChange(): void;
}

export class DemandShare {
  private mine: Demand = {};
  private last = '';
  private lastRaw: string | null = null;
  private demand: Demand = {};
  private readonly window = new DemandWindow();
  private timer: NodeJS.Timeout | null = null;
  private passing: Promise<void> | null = null;

  constructor(private readonly deps: DemandShareDeps) {}

  /** This node's share per lang and type. */
  get value(): Demand {
    return this.mine;
  }

  start(): void {
    const tick = () => {
      this.passing = this.pass().finally(() => {
        this.passing = null;
        if (this.timer) this.timer = setTimeout(tick, this.deps.timing().intervalSec * 1000);
      });
    };
    this.timer = setTimeout(tick, 0);
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.passing;
  }

  /** One pass: read, average, split, and log and apply a changed share. Exported for tests. */
  async pass(now = Date.now()): Promise<void> {
    const { etcd, log } = this.deps;
    let raw: string | null;
    let tree: Record<string, string>;
    try {
      [raw, tree] = await Promise.all([etcd.get(DEMAND_KEY), etcd.getPrefix(AGENTS_PREFIX)]);
    } catch {
      return; // etcd away: the last share stays (the registration says the outage once)
    }
    if (raw !== this.lastRaw) {
      this.lastRaw = raw;
      try {
        this.demand = raw === null || raw.trim() === '' ? {} : parseDemand(raw);
      } catch (err) {
        log.error('ignoring a bad pool demand in etcd; the last good one stays', {
          key: etcd.prefix + DEMAND_KEY,
          problem: errorMessage(err),
        });
      }
    }
    const averaged = this.window.add(this.demand, now, this.deps.timing().windowSec);
    const agents = liveAgents(tree);
    const mine = splitDemand(averaged, agents).get(this.deps.agentId) ?? {};
    const key = JSON.stringify(mine);
    if (key === this.last) return;
    this.last = key;
    this.mine = mine;
    log.info('pool share of the cluster demand changed', { demand: averaged, agents: agents.map((a) => a.id), share: mine });
    this.deps.onChange();
  }
}

/** Builds and starts the share of an agent (the wiring the agent uses). */
export function shareDemand(
  etcd: EtcdStore,
  agentId: string,
  log: Logger,
  pool: () => { checkIntervalSec: number; demandWindowSec: number },
  onChange: () => void,
): DemandShare {
  const share = new DemandShare({
    etcd,
    agentId,
    log: log.child({ component: 'pool-demand' }),
    timing: () => ({ intervalSec: pool().checkIntervalSec, windowSec: pool().demandWindowSec }),
    onChange,
  });
  share.start();
  return share;
}
