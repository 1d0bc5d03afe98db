/**
 * The health of the etcd cluster as `agent check` judges it, from what each
 * endpoint of `--etcd-addr` says about itself (a pure function, so every
 * verdict has a unit test): every endpoint should answer, all should belong
 * to one cluster, and all should know the same leader. A minority of
 * endpoints down is a warning (the cluster works, the agent fails over); no
 * answer, no majority of the endpoints (list every member), two clusters,
 * or no agreed leader is a failure.
 */
import type { MemberStatus } from '../adapters/etcd.js';

/** The verdict: a line for the checklist, and what deserves a look. */
export interface ClusterVerdict {
  ok: boolean;
  detail: string;
  fix?: string;
  warnings: string[];
}

const FIX_ENDPOINTS =
  "start the etcd members that do not answer, or list the cluster's client endpoints in --etcd-addr / BACKEND_ETCD_ADDR";

/** Judges the cluster from the status of each configured endpoint. */
export function judgeCluster(statuses: readonly MemberStatus[]): ClusterVerdict {
  const up = statuses.filter((s) => s.ok);
  const down = statuses.filter((s) => !s.ok);
  const warnings = down.map(
    (s) => `etcd endpoint ${s.endpoint} does not answer (${(s.error ?? 'no answer').slice(0, 120)}); fix: ${FIX_ENDPOINTS}`,
  );
  if (up.length === 0) return { ok: false, detail: `none of ${statuses.length} etcd endpoint(s) answers`, fix: FIX_ENDPOINTS, warnings };
  if (statuses.length > 1 && up.length * 2 <= statuses.length) {
    return {
      ok: false,
      detail: `only ${up.length} of ${statuses.length} etcd endpoints answer: no quorum (a cluster of ${statuses.length} needs ${Math.floor(statuses.length / 2) + 1})`,
      fix: FIX_ENDPOINTS,
      warnings,
    };
  }
  const clusters = new Set(up.map((s) => s.clusterId));
  if (clusters.size > 1) {
    return {
      ok: false,
      detail: `the endpoints belong to ${clusters.size} different etcd clusters (${up.map((s) => `${s.endpoint}: ${s.clusterId}`).join(', ')})`,
      fix: 'list the members of one cluster only in --etcd-addr',
      warnings,
    };
  }
  const leaders = new Set(up.map((s) => s.leader ?? '0'));
  if (leaders.has('0') || leaders.size > 1) {
    return {
      ok: false,
      detail:
        leaders.size > 1
          ? `the members disagree on the leader (${up.map((s) => `${s.endpoint}: ${s.leader}`).join(', ')})`
          : 'no leader: the cluster has lost its quorum or is electing one',
      fix: 'bring a majority of the etcd members up (etcdctl endpoint status --cluster shows each)',
      warnings,
    };
  }
  const versions = [...new Set(up.map((s) => s.version))].join('/');
  const term = up.map((s) => Number(s.raftTerm ?? 0)).reduce((a, b) => Math.max(a, b), 0);
  const leader = [...leaders][0]!;
  const leaderEndpoint = up.find((s) => s.memberId === leader)?.endpoint;
  const detail = `${up.length}/${statuses.length} endpoint(s) answer (etcd ${versions}); leader ${BigInt(leader).toString(16)}${leaderEndpoint ? ` at ${leaderEndpoint}` : ''}, raft term ${term}`;
  return { ok: true, detail, warnings };
}
