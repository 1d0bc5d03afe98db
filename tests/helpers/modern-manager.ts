/**
 * A test manager of the 24.09 generation: the Callosum 1.x client
 * (src/rpc/callosum-client.ts) and the call sequence a Backend.AI 24.09
 * manager runs for a session, with the argument shapes it sends (the kernel
 * creation config of common/types.py KernelCreationConfig, with the ext
 * values it packs, here as the plain values the agent reads them into).
 */
import { CallosumClient, type CallosumClientOptions } from '../../src/rpc/callosum-client.js';
import { modernMethods } from '../../src/rpc/modern-methods.js';
import type { RunResult } from '../../src/rpc/results.js';
import { TEST_IMAGE_LANG, TEST_IMAGE_PREFIX } from './env.js';
import { Redis } from 'ioredis';
import { msgpackCodec } from '../../src/wire/codec.js';

/** The shared Redis that deploy/dev/up.sh starts (REDIS_ADDR overrides). */
export const REDIS_ADDR = process.env.REDIS_ADDR ?? '127.0.0.1:6379';

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
    return this.client.call(
      modernMethods.create_kernels,
      sessionId,
      kernelIds,
      configs,
      {
        mode: 'single-node',
        size: kernelIds.length,
        replicas: { main: 1 },
        network_name: null,
        ssh_keypair: { public_key: '', private_key: '' },
        cluster_ssh_port_mapping: null,
      },
      refs,
    );
  }

  /** Runs code to its end as the manager's execute loop does (continue while `continued`, 100 times at most); the last result. */
  async executeToEnd(sessionId: string, kernelId: string, code: string, runId = 'r1'): Promise<RunResult> {
    return (await this.executeAll(sessionId, kernelId, code, runId)).at(-1)!;
  }

  /** Runs code to its end as {@link executeToEnd} does; every result, so that the output of the `continued` ones is kept. */
  async executeAll(sessionId: string, kernelId: string, code: string, runId = 'r1'): Promise<RunResult[]> {
    const all = [await this.client.call(modernMethods.execute, sessionId, kernelId, 2, runId, 'query', code, {}, 2.0)];
    while (all.at(-1)!.status === 'continued' && all.length <= 100)
      all.push(await this.client.call(modernMethods.execute, sessionId, kernelId, 2, runId, 'continue', '', {}, 2.0));
    return all;
  }

  close(): void {
    this.client.close();
  }
}

/** One event read from the stream: its name, source and decoded args. */
export interface StreamEvent {
  id: string;
  name: string;
  source: string;
  args: unknown[];
}

/**
 * A reader of the Redis event stream as the 24.09 manager consumes it
 * (`events` in database 4, fields name, source, args), keeping the events
 * of one agent (`source`).
 */
export class StreamReader {
  private readonly redis: Redis;
  private last = '0';
  readonly seen: StreamEvent[] = [];

  constructor(
    addr: string,
    private readonly source: string,
  ) {
    const [host, port] = addr.split(':');
    this.redis = new Redis({ host, port: Number(port), db: 4, maxRetriesPerRequest: 1, lazyConnect: false });
    this.redis.on('error', () => undefined);
  }

  /** Starts reading after what is in the stream now (call before the agent starts). */
  async mark(): Promise<void> {
    const top = (await this.redis.xrevrange('events', '+', '-', 'COUNT', 1)) as Array<[string, string[]]>;
    this.last = top[0]?.[0] ?? '0';
  }

  /** Waits until an event of this source matches `pred` (reading on from where it was), up to `timeoutMs`. */
  async waitFor(what: string, pred: (e: StreamEvent) => boolean, timeoutMs = 30_000): Promise<StreamEvent> {
    const found = this.seen.find(pred);
    if (found) return found;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const res = (await this.redis.xreadBuffer('COUNT', 500, 'BLOCK', 500, 'STREAMS', 'events', this.last)) as Array<
        [Buffer, Array<[Buffer, Buffer[]]>]
      > | null;
      for (const [, entries] of res ?? []) {
        for (const [id, fields] of entries) {
          this.last = id.toString();
          const f: Record<string, Buffer> = {};
          for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!.toString()] = fields[i + 1]!;
          if (f.source?.toString() !== this.source) continue;
          const e = { id: this.last, name: f.name!.toString(), source: this.source, args: msgpackCodec.decode(f.args!) as unknown[] };
          this.seen.push(e);
        }
      }
      const hit = this.seen.find(pred);
      if (hit) return hit;
    }
    throw new Error(`no ${what} on the Redis stream within ${timeoutMs} ms; seen: ${this.seen.map((e) => e.name).join(', ')}`);
  }

  close(): void {
    this.redis.disconnect();
  }
}

/** A msgpack ext value with its raw data, for {@link packWithExt} (e.g. a pickle as a 24.09 manager packs it). */
export class RawExt {
  constructor(
    readonly type: number,
    readonly data: Buffer,
  ) {}
}

/**
 * Packs a value like the agent's codec, except that {@link RawExt} leaves
 * go out as msgpack ext types: the arguments of a 24.09 manager that carry
 * pickled values (msgpackr's extension registry is global, so the test does
 * not register packers there).
 */
export function packWithExt(value: unknown): Buffer {
  if (value instanceof RawExt) {
    const n = value.data.length;
    const head = n <= 0xff ? Buffer.from([0xc7, n, value.type]) : Buffer.from([0xc8, n >> 8, n & 0xff, value.type]);
    return Buffer.concat([head, value.data]);
  }
  if (Array.isArray(value)) {
    const n = value.length;
    const head = n < 16 ? Buffer.from([0x90 | n]) : Buffer.from([0xdc, n >> 8, n & 0xff]);
    return Buffer.concat([head, ...value.map(packWithExt)]);
  }
  if (value !== null && typeof value === 'object' && !(value instanceof Uint8Array)) {
    const entries = Object.entries(value);
    const n = entries.length;
    const head = n < 16 ? Buffer.from([0x80 | n]) : Buffer.from([0xde, n >> 8, n & 0xff]);
    return Buffer.concat([head, ...entries.flatMap(([k, v]) => [msgpackCodec.encode(k), packWithExt(v)])]);
  }
  return msgpackCodec.encode(value);
}
