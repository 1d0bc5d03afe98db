/**
 * The apps of a kernel (docs/service-ports.rst): start_service and
 * shutdown_service ask the kernel's runner with a `start-service` /
 * `shutdown-service` record and return its `service-result` map; the agent
 * bounds its wait beyond the runner's own start timeout, so that a slow app
 * is reported by the runner, and keeps the last state of each app for
 * list_kernels. Nothing here restarts an app behind the manager's back.
 */
import { errorMessage } from '../errors.js';
import type { ServiceResult } from '../rpc/results.js';
import type { KernelRelay } from '../relay/kernel-relay.js';
import type { KernelRecord } from './record.js';

/** How long the runner waits for an app's port before it answers `failed` (deploy/kernels/python/services.py). */
export const RUNNER_START_TIMEOUT_SEC = 60;
/** The agent waits longer than that, so that a slow app is reported by the runner rather than timed out here first. */
export const AGENT_START_WAIT_MS = (RUNNER_START_TIMEOUT_SEC + 15) * 1000;
const SHUTDOWN_WAIT_MS = 20_000;
const PING_WAIT_MS = 10_000;

/** An app's last known state, for listings. */
export type AppState = 'running' | 'stopped' | 'failed' | 'not-started';

/** The known state of each app of a kernel's image. */
export function appStates(
  rec: KernelRecord,
  host: string,
): Array<{ name: string; protocol: string; host: string; host_port: number; state: AppState }> {
  return (rec.servicePorts ?? []).map((p) => ({
    name: p.name,
    protocol: p.protocol,
    host,
    host_port: p.host_port,
    state: rec.appStates?.[p.name] ?? 'not-started',
  }));
}

/** The runner's answer, or a failed map saying why there is none usable. */
function asResult(payload: Buffer): ServiceResult {
  let o: unknown;
  try {
    o = JSON.parse(payload.toString('utf8'));
  } catch {
    return { status: 'failed', error: 'the kernel runner answered with something that is not JSON' };
  }
  const ok = ['started', 'running', 'failed', 'stopped', 'not-running'];
  if (!o || typeof o !== 'object' || Array.isArray(o) || !ok.includes(String((o as { status?: unknown }).status))) {
    return { status: 'failed', error: 'the kernel runner answered without a known status' };
  }
  return o as ServiceResult;
}

/** What the apps need of the kernel service (KernelService is one): a narrow view, so that the service may list app states without a file circle. */
export interface AppKernels {
  /** The record of a kernel once no restart is in progress. */
  ready(id: string): Promise<KernelRecord>;
  /** The relay to a kernel's runner. */
  relay(id: string): Promise<KernelRelay>;
}

export class KernelApps {
  constructor(private readonly kernels: AppKernels) {}

  /** start_service: an unknown name is the failed map, not an RPC error (docs/service-ports.rst). */
  async start(id: string, name: string, options: Record<string, unknown>): Promise<ServiceResult> {
    const rec = await this.kernels.ready(id);
    const decl = rec.traits.services.ok ? rec.traits.services.services.find((s) => s.name === name) : undefined;
    if (!decl) return { status: 'failed', error: 'invalid service name' };
    const relay = await this.kernels.relay(id);
    const body = JSON.stringify({ name, port: decl.port, protocol: decl.protocol, options });
    const wait = `the kernel runner did not answer start-service for ${name} within ${AGENT_START_WAIT_MS / 1000} s`;
    const result = await relay
      .request('start-service', body, 'service-result', AGENT_START_WAIT_MS, wait)
      .then(asResult, (err: unknown) => ({ status: 'failed', error: errorMessage(err) }) as ServiceResult);
    rec.appStates = { ...rec.appStates, [name]: result.status === 'failed' ? 'failed' : 'running' };
    return result;
  }

  /** shutdown_service (beyond): `stopped`, or `not-running` for an app that was not started. */
  async shutdown(id: string, name: string): Promise<ServiceResult> {
    const rec = await this.kernels.ready(id);
    const known = rec.traits.services.ok && rec.traits.services.services.some((s) => s.name === name);
    if (!known) return { status: 'failed', error: 'invalid service name' };
    const relay = await this.kernels.relay(id);
    const wait = `the kernel runner did not answer shutdown-service for ${name} within ${SHUTDOWN_WAIT_MS / 1000} s`;
    const result = await relay
      .request('shutdown-service', JSON.stringify({ name }), 'service-result', SHUTDOWN_WAIT_MS, wait)
      .then(asResult, (err: unknown) => ({ status: 'failed', error: errorMessage(err) }) as ServiceResult);
    if (result.status !== 'failed') rec.appStates = { ...rec.appStates, [name]: 'stopped' };
    return result;
  }

  /**
   * ping_kernel: the runner's input thread answers a `status` request (so a
   * kernel busy with a long run still answers), or a KernelUnresponsiveError
   * says it did not; returns the round trip in seconds.
   */
  async ping(id: string, timeoutMs = PING_WAIT_MS): Promise<number> {
    const relay = await this.kernels.relay(id);
    const t0 = process.hrtime.bigint();
    await relay.request(
      'status',
      '',
      'status',
      timeoutMs,
      `ping_kernel ${id}: the kernel runner did not answer within ${timeoutMs / 1000} s; get_logs shows its output`,
    );
    return Number(process.hrtime.bigint() - t0) / 1e9;
  }
}
