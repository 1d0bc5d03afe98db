/**
 * Warm pool helpers for tests and benchmarks: put pool settings into an
 * agent's etcd namespace (before `startAgent` starts it, or live), and wait
 * for an in-process agent's pool to settle.
 *
 *   const t = await startAgent({}, (ns) => putPool(ns, { 'python:3-debian': { small: 2 } }));
 *   await poolSettled(t.agent, 2);   // then time create_kernel
 */
import type { Namespace } from 'etcd3';
import type { Agent } from '../../src/agent.js';
import { eventually } from './env.js';

/** The resource types the pool tests use. */
export const POOL_TYPES = [
  { name: 'small', cpu: 1, memory: 256 },
  { name: 'large', cpu: 2, memory: '1g' },
];

/** Puts `pool/types`, `pool/images` and other pool keys (check_interval 0.5 s unless given) under `config/agent/`. */
export async function putPool(
  ns: Namespace,
  images: Record<string, Record<string, number>>,
  extra: Record<string, string> = {},
  types: unknown[] = POOL_TYPES,
): Promise<void> {
  await ns.put('config/agent/pool/types').value(JSON.stringify(types));
  await ns.put('config/agent/pool/images').value(JSON.stringify(images));
  for (const [k, v] of Object.entries({ check_interval: '0.5', ...extra })) await ns.put(`config/agent/pool/${k}`).value(v);
}

/** Waits until an in-process agent's pool has `n` idle containers and none being created; returns their container ids. */
export async function poolSettled(agent: Agent, n: number, timeoutMs = 90_000): Promise<string[]> {
  const pool = agent.warmPool!;
  await eventually(`a pool of ${n} idle containers`, () => pool.idle.size === n && pool.creating.size === 0, timeoutMs, 100);
  return [...pool.idle.keys()];
}
