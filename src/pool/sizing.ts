/**
 * The sizing policy of the warm pool, as a pure function: for one image and
 * resource type, how many containers to create and which idle ones to
 * remove. The configured count is the floor; with autoscale on, the target
 * follows the demand of the recent window (claims, and cold creations a
 * configured type would have served; bounded by `max`), containers
 * still being created count as present (so a slow start never
 * over-provisions), and idle containers above the target go only once they
 * have been idle for `maxIdleSec`. Without autoscale the pool is held at the
 * floor: containers above it go at once (a lowered count applies live).
 * This node's share of the cluster's pending demand (services/demand.ts),
 * added to the floor and bounded by `max`, is a second target; the larger
 * of the two wins, with or without autoscale.
 */

/** What one sizing decision is made from; logged with the decision. */
export interface SizingInput {
  floor: number;
  max: number;
  autoscale: boolean;
  /** Demand for this image and type within the autoscale window (claims and cold creations it would have served). */
  recentDemand: number;
  /** This node's share of the cluster's pending demand for this image and type (0: none). */
  clusterShare?: number;
  creating: number;
  /** Idle containers, with the time each became idle (ms). */
  idle: ReadonlyArray<{ id: string; idleSinceMs: number }>;
  nowMs: number;
  maxIdleSec: number;
}

/** What to do. */
export interface SizingDecision {
  target: number;
  create: number;
  remove: string[];
}

/** Decides how to bring one image and type to its target. */
export function decideSize(i: SizingInput): SizingDecision {
  const own = i.autoscale ? Math.max(i.floor, Math.min(i.max, i.recentDemand)) : i.floor;
  const share = i.clusterShare ?? 0;
  const target = share > 0 ? Math.max(own, Math.min(i.max, i.floor + share)) : own;
  const present = i.idle.length + i.creating;
  const create = Math.max(0, target - present);
  // Only what is idle above the target goes: a creation under way may still fail.
  let excess = i.idle.length - target;
  const remove: string[] = [];
  if (excess > 0) {
    // Oldest idle first: the longest unused go, and with autoscale only past max_idle.
    const byAge = [...i.idle].sort((a, b) => a.idleSinceMs - b.idleSinceMs);
    for (const c of byAge) {
      if (excess <= 0) break;
      if (i.autoscale && i.nowMs - c.idleSinceMs < i.maxIdleSec * 1000) continue;
      remove.push(c.id);
      excess--;
    }
  }
  return { target, create, remove };
}
