/**
 * A test manager of the 24.09 generation: the Callosum 1.x client
 * (src/rpc/callosum-client.ts) and the call sequence a Backend.AI 24.09
 * manager runs for a session, with the argument shapes it sends (the kernel
 * creation config of common/types.py KernelCreationConfig, with the ext
 * values it packs, here as the plain values the agent reads them into).
 */
import { CallosumClient, type CallosumClientOptions } from '../../src/rpc/callosum-client.js';
import { modernMethods } from '../../src/rpc/modern-methods.js';
import type { RunResult } from '../../src/rpc/methods.js';
import { TEST_IMAGE_LANG, TEST_IMAGE_PREFIX } from './env.js';

/** A 24.09 kernel creation config for the test image; `extra` overrides keys. */
export function modernKernelConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    image: {
      canonical: TEST_IMAGE_PREFIX + TEST_IMAGE_LANG,
      architecture: 'x86_64',
      digest: '',
      repo_digest: null,
      registry: { name: 'index.docker.io', url: 'https://registry-1.docker.io', username: null, password: null },
      labels: {},
      is_local: true,
      auto_pull: 'digest',
    },
    auto_pull: 'digest',
    session_type: 'interactive',
    cluster_mode: 'single-node',
    cluster_role: 'main',
    cluster_idx: 1,
    cluster_hostname: 'main1',
    resource_slots: { cpu: '1', mem: '268435456' },
    resource_opts: {},
    environ: { GREETING: 'hello' },
    mounts: [],
    package_directory: [],
    idle_timeout: 600,
    bootstrap_script: null,
    startup_command: null,
    internal_data: null,
    preopen_ports: [],
    allocated_host_ports: [],
    scaling_group: 'default',
    agent_addr: '',
    endpoint_id: null,
    ...extra,
  };
}

/** The ImageRef field map of the test image, as the agent reads ext type 7. */
export function testImageRef(): Record<string, unknown> {
  const [name, tag] = TEST_IMAGE_LANG.split(':');
  return { name: `kernel-${name}`, project: 'lablup', tag, registry: 'index.docker.io', architecture: 'x86_64', is_local: true };
}

/** ModernManager drives one agent as a 24.09 manager does. */
export class ModernManager {
  readonly client: CallosumClient;

  constructor(endpoint: string, options: CallosumClientOptions = {}) {
    this.client = new CallosumClient(endpoint, { timeoutMs: 120_000, ...options });
  }

  createKernels(sessionId: string, kernelIds: string[], configs: Array<Record<string, unknown>>) {
    const refs = Object.fromEntries(kernelIds.map((k) => [k, testImageRef()]));
    return this.client.call(modernMethods.create_kernels, sessionId, kernelIds, configs, { mode: 'single-node', size: kernelIds.length, replicas: { main: 1 }, network_name: null, ssh_keypair: { public_key: '', private_key: '' }, cluster_ssh_port_mapping: null }, refs);
  }

  /** Runs code to its end as the manager's execute loop does (continue while `continued`). */
  async executeToEnd(sessionId: string, kernelId: string, code: string, runId = 'r1'): Promise<RunResult> {
    let r = await this.client.call(modernMethods.execute, sessionId, kernelId, 2, runId, 'query', code, {}, 2.0);
    for (let i = 0; r.status === 'continued' && i < 100; i++) r = await this.client.call(modernMethods.execute, sessionId, kernelId, 2, runId, 'continue', '', {}, 2.0);
    return r;
  }

  close(): void {
    this.client.close();
  }
}
