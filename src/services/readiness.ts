/**
 * The probes of `/readyz` (src/metrics/health.ts): what the agent needs to
 * take kernels, each saying what is wrong and the fix — etcd answers, Docker
 * answers, the modern managers' Redis is reachable where `config/redis` is
 * set, this agent's kernel isolation chains are all in the firewall, and the
 * node is not draining.
 */
import type { EtcdStore } from '../adapters/etcd.js';
import type { DockerEngine } from '../adapters/docker.js';
import { drainKey, MANAGER_KEY, REDIS_ADDR_KEY } from '../config/etcd-keys.js';
import type { KernelNetwork } from '../containers/kernel-network.js';
import type { RedisStreamSink } from '../events/redis-stream.js';
import type { ReadinessProbe } from '../metrics/health.js';
import type { NodeDrain } from './drain.js';

/** What the probes look at. */
export interface ReadinessParts {
  agentId: string;
  etcd: EtcdStore;
  docker: DockerEngine;
  network: KernelNetwork;
  redis: RedisStreamSink;
  drain: NodeDrain;
}

/** The readiness probes over the agent's parts, in the order of the body. */
export function readinessProbes(p: ReadinessParts): ReadinessProbe[] {
  const iso = (sec: number) => new Date(sec * 1000).toISOString();
  return [
    {
      name: 'etcd',
      fix: `check that etcd answers at ${p.etcd.where} (etcdctl endpoint health) and that the agent reaches it (--etcd-addr)`,
      probe: async () => {
        await p.etcd.get(MANAGER_KEY);
        return { ok: true };
      },
    },
    {
      name: 'docker',
      fix: 'check that dockerd runs (systemctl status docker) and that the agent may use /var/run/docker.sock',
      probe: async () => ({ ok: true, detail: `Docker ${await p.docker.version()}` }),
    },
    {
      name: 'redis',
      fix: `check that the Redis named by ${REDIS_ADDR_KEY} in etcd runs and is reachable from this node`,
      probe: () => {
        const up = p.redis.connected;
        if (up === null) return Promise.resolve({ ok: true, detail: `not set (${REDIS_ADDR_KEY})` });
        if (up) return Promise.resolve({ ok: true, detail: String(p.redis.addr) });
        return Promise.resolve({
          ok: false,
          error: `Redis at ${p.redis.addr} does not answer: events to modern managers wait in a bounded queue`,
          fix: `check that the Redis named by ${REDIS_ADDR_KEY} in etcd runs and is reachable from this node`,
        });
      },
    },
    {
      name: 'firewall',
      fix: 'check that iptables runs on this host (the agent runs it to list its chains)',
      probe: async () => {
        const state = p.network.state();
        if (state.isolation === 'off') return { ok: true, detail: 'kernel_isolation is off: no chains to check' };
        const missing = await p.network.missing();
        if (missing.length === 0) return { ok: true, detail: state.chains.join(', ') };
        return {
          ok: false,
          error: `the chains that keep kernels apart are missing from the firewall: ${missing.join(', ')}`,
          fix: 'restart the agent (it installs its chains at start), and find what removed them (a firewall reload such as iptables -F or firewalld)',
        };
      },
    },
    {
      name: 'drain',
      fix: 'agentctl undrain',
      probe: () => {
        const d = p.drain.value;
        if (!d) return Promise.resolve({ ok: true });
        return Promise.resolve({
          ok: false,
          error: `the node is draining since ${iso(d.since)}${d.deadline === null ? '' : `; its kernels end by ${iso(d.deadline)}`}: it takes no new kernels`,
          fix: `when the maintenance is done: agentctl undrain (or delete ${drainKey(p.agentId)} in etcd)`,
        });
      },
    },
  ];
}
