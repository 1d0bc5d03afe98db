/**
 * EtcdStore is the agent's adapter to etcd v3: every key is relative to
 * `/sorna/<namespace>/` (docs/wire-contract.rst, "etcd"), values are UTF-8 strings.
 * It talks to a cluster: the endpoint list of `--etcd-addr` (the etcd3
 * client fails over between them), waits for etcd with a bounded jittered
 * backoff, hands out leases, and its watches resume from the last seen
 * revision after a reconnect (the etcd3 watch manager) and survive a
 * compaction in between by a full re-read (the caller's `onResync`).
 * Every etcd3/gRPC failure becomes one of our errors here (`castEtcdError`).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ClientClosedError,
  Etcd3,
  GRPCDeadlineExceededError,
  GRPCResourceExhastedError,
  GRPCUnavailableError,
  isRecoverableError,
  type Lease,
  type Namespace,
  type Watcher,
  type WatchBuilder,
} from 'etcd3';
import type { Logger } from '../log.js';
import { AgentError, errorMessage, EtcdError, EtcdUnavailableError } from '../errors.js';
import { backoffDelay, Outage, type BackoffPolicy } from '../util/backoff.js';

/** A change seen by a watch: the key (relative to the watched prefix's namespace) and its new value, or null when deleted. */
export type WatchCallback = (key: string, value: string | null) => void;

/** Closes a watch. */
export type Unwatch = () => Promise<void>;

/** One etcd client endpoint. */
export interface Endpoint {
  host: string;
  port: number;
}

/** What a watch may be given besides its callback. */
export interface WatchOptions {
  /** Called after the watch had to be created anew (its history was compacted away): re-read everything watched. */
  onResync?: () => void;
  /** Start from this revision instead of now (tests, and callers that read at a known revision). */
  fromRevision?: string;
}

/** MemberStatus is what one endpoint says about itself and the cluster, or why it did not answer. */
export interface MemberStatus {
  endpoint: string;
  ok: boolean;
  error?: string;
  version?: string;
  clusterId?: string;
  memberId?: string;
  leader?: string;
  raftTerm?: string;
}

/** A lease of this store: keys put with it vanish when it expires or is revoked. */
export interface StoreLease {
  /** Puts a key held by the lease. */
  put(key: string, value: string): Promise<void>;
  /** Called once when the lease is lost (expired, revoked, or not kept alive for twice its TTL). */
  onLost(cb: (err: Error) => void): void;
  /** Called on each successful keep-alive. */
  onKeepalive(cb: () => void): void;
  /** The lease's id (hex), once granted. */
  id(): Promise<string>;
  /** Revokes it: its keys go at once. */
  revoke(): Promise<void>;
  /** Stops keeping it alive without revoking it (its keys go at the TTL). */
  release(): void;
}

function endpointUrl(e: Endpoint): string {
  return `http://${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}`;
}

function endpointName(e: Endpoint): string {
  return `${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}`;
}

/** What to do when etcd does not answer, said by every error and log line about it. */
export const ETCD_UNAVAILABLE_FIX = 'start etcd (a quorum of its members) or fix --etcd-addr / BACKEND_ETCD_ADDR';

/**
 * Turns an etcd3 failure into our error, naming the endpoints and the step
 * (as etcd3's castGrpcError types gRPC statuses): no endpoint answers, a
 * deadline passed or a transient gRPC failure is a retryable
 * EtcdUnavailableError saying what to do; anything else etcd refused is an
 * EtcdError. Ours pass through as they are.
 */
export function castEtcdError(err: unknown, step: string, where: string): AgentError {
  if (err instanceof AgentError) return err;
  const msg = errorMessage(err);
  const reason = unavailableReason(err);
  if (reason !== null) {
    return new EtcdUnavailableError(`${step}: etcd at ${where} does not answer (${msg}); ${ETCD_UNAVAILABLE_FIX}`, reason, { cause: err });
  }
  if (err instanceof ClientClosedError) return new EtcdError(`${step}: the etcd client is closed (the agent is stopping)`, { cause: err });
  return new EtcdError(`${step}: etcd at ${where} refused it (${msg})`, { cause: err });
}

/** Socket errors that mean the endpoint cannot be reached now. */
const SOCKET_FAILURES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

/** The short cause when a failure means etcd is not reachable now (else null). */
function unavailableReason(err: unknown): string | null {
  if (!(err instanceof Error)) return null;
  // gRPC's unavailable status carries the socket's failure only in its message ("connect ECONNREFUSED ..."): name it
  const socketCode = /\b(E[A-Z_]{4,})\b/.exec(err.message)?.[1];
  if (socketCode !== undefined && SOCKET_FAILURES.has(socketCode)) return socketCode;
  if (err instanceof GRPCDeadlineExceededError) return 'deadline exceeded';
  if (err instanceof GRPCUnavailableError) return 'unavailable';
  // cockatiel's BrokenCircuitError: every endpoint failed just before, so etcd3 does not even try
  if ((err as { isBrokenCircuitError?: boolean }).isBrokenCircuitError === true) return 'no endpoint answers (circuit breaker open)';
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code === 'string' && SOCKET_FAILURES.has(code)) return code;
  // etcd3 counts a message over gRPC's size limit as recoverable; sent again, it is refused again
  if (isRecoverableError(err) && !(err instanceof GRPCResourceExhastedError))
    return err.constructor.name.replace(/^GRPC|Error$/g, '') || 'transient gRPC failure';
  return null;
}

/** The policy of the agent's etcd loops (waits, lease re-grants, watch re-creation): 250 ms doubling to 5 s, +-20 %. */
export const ETCD_BACKOFF: BackoffPolicy = { baseMs: 250, maxMs: 5000, jitter: 0.2 };

const clientOptions = {
  dialTimeout: 3000,
  // unary calls get a deadline, so a hung etcd cannot hang a caller forever
  defaultCallOptions: (ctx: { isStream: boolean }) => (ctx.isStream ? {} : { deadline: Date.now() + 5000 }),
};

/**
 * EtcdStore is the agent's view of etcd: one namespace (`/sorna/<namespace>/`)
 * of an etcd v3 cluster, with reads, writes, watches and leases, and calls that
 * fail over between the cluster's endpoints.
 */
export class EtcdStore {
  private readonly client: Etcd3;
  private readonly ns: Namespace;
  readonly prefix: string;
  /** The endpoints of the cluster, in the order given. */
  readonly endpoints: Endpoint[];
  /** The watches share one stream: its outage is said once for all of them. */
  private readonly watchOutage = new Outage();
  /** Leases handed out and not yet released: close() stops keeping them alive. */
  private readonly leases = new Set<Lease>();

  constructor(
    address: Endpoint | Endpoint[],
    namespace: string,
    private readonly log: Logger,
  ) {
    this.endpoints = Array.isArray(address) ? address : [address];
    if (this.endpoints.length === 0) throw new RangeError('EtcdStore needs at least one endpoint');
    this.client = new Etcd3({ hosts: this.endpoints.map(endpointUrl), ...clientOptions });
    this.prefix = `/sorna/${namespace}/`;
    this.ns = this.client.namespace(this.prefix);
  }

  /** The first endpoint (what a single-endpoint caller gave). */
  get address(): Endpoint {
    return this.endpoints[0]!;
  }

  /** Human-readable endpoint list, for logs. */
  get where(): string {
    return this.endpoints.map(endpointName).join(',');
  }

  /**
   * Waits until etcd answers, retrying with a jittered backoff from 250 ms up to 5 s.
   * Logs once when it starts waiting and then every 30 s, not on every try.
   */
  async waitReady(signal: AbortSignal): Promise<void> {
    let lastLog = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.ns.get('').string(); // any read proves a quorum answers; the namespace's own key needs no knowledge of the layout (src/config/etcd-keys.ts)
        if (attempt > 1) this.log.info('etcd is reachable', { etcd: this.where, attempts: attempt });
        return;
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        if (Date.now() - lastLog >= 30_000) {
          lastLog = Date.now();
          this.log.warn('waiting for etcd', {
            etcd: this.where,
            error: errorMessage(err),
            hint: `${ETCD_UNAVAILABLE_FIX}; the agent keeps retrying`,
          });
        }
      }
      await sleep(backoffDelay(attempt, ETCD_BACKOFF), undefined, { signal });
    }
  }

  /** Grants a lease of `ttlSec` seconds (at least 1), kept alive by the client until revoked or released. */
  lease(ttlSec: number): StoreLease {
    const lease: Lease = this.ns.lease(ttlSec, { autoKeepAlive: true });
    lease.on('lost', () => undefined); // a listener of the caller's is added by onLost; never an unhandled 'error'
    this.leases.add(lease);
    lease.once('lost', () => this.leases.delete(lease));
    return {
      put: (key, value) => this.call(`writing ${key} under a lease`, async () => void (await lease.put(key).value(value))),
      onLost: (cb) => void lease.once('lost', cb),
      onKeepalive: (cb) => void lease.on('keepaliveSucceeded', () => cb()),
      id: () => this.call('granting a lease', async () => BigInt(await lease.grant()).toString(16)),
      revoke: () => {
        this.leases.delete(lease);
        return this.call('revoking a lease', () => lease.revoke());
      },
      release: () => {
        this.leases.delete(lease);
        lease.release();
      },
    };
  }

  /** What each endpoint says about itself and the cluster (one try each, bounded by a deadline). */
  async memberStatuses(): Promise<MemberStatus[]> {
    return Promise.all(
      this.endpoints.map(async (e) => {
        const one = new Etcd3({ hosts: endpointUrl(e), ...clientOptions });
        try {
          const s = await one.maintenance.status();
          return {
            endpoint: endpointName(e),
            ok: true,
            version: s.version,
            clusterId: s.header.cluster_id,
            memberId: s.header.member_id,
            leader: s.leader,
            raftTerm: s.raftTerm,
          };
        } catch (err) {
          return { endpoint: endpointName(e), ok: false, error: errorMessage(err) };
        } finally {
          one.close();
        }
      }),
    );
  }

  /** The members the cluster lists (id and client URLs). */
  async memberList(): Promise<Array<{ id: string; name: string; clientURLs: string[] }>> {
    const r = await this.call('listing the members', () => this.client.cluster.memberList({ linearizable: true }));
    return r.members.map((m) => ({ id: m.ID, name: m.name, clientURLs: m.clientURLs }));
  }

  /** The cluster's current revision (of the KV store). */
  async revision(): Promise<string> {
    return (await this.call('reading the revision', () => this.client.maintenance.status())).header.revision;
  }

  /** The version of the etcd server that answers, e.g. `3.4.23`; one try, bounded by the call deadline. */
  async serverVersion(): Promise<string> {
    return (await this.call('reading the server version', () => this.client.maintenance.status())).version;
  }

  /** The value of a key, or null when absent. */
  async get(key: string): Promise<string | null> {
    return this.call(`reading ${key}`, () => this.ns.get(key).string());
  }

  /** Every key below a prefix, with the prefix stripped from the keys. */
  async getPrefix(prefix: string): Promise<Record<string, string>> {
    const all = await this.call(`reading ${prefix}*`, () => this.ns.getAll().prefix(prefix).strings());
    return Object.fromEntries(Object.entries(all).map(([k, v]) => [k.slice(prefix.length), v]));
  }

  /** Writes a key of the namespace. */
  async put(key: string, value: string): Promise<void> {
    await this.call(`writing ${key}`, () => this.ns.put(key).value(value));
  }

  /** Deletes one key. */
  async delete(key: string): Promise<void> {
    await this.call(`deleting ${key}`, () => this.ns.delete().key(key));
  }

  /** Deletes a key only if it still holds `value` (one etcd transaction); returns whether it did. */
  async deleteIf(key: string, value: string): Promise<boolean> {
    const r = await this.call(`deleting ${key} if unchanged`, () =>
      this.ns.if(key, 'Value', '==', value).then(this.ns.delete().key(key)).commit(),
    );
    return r.succeeded;
  }

  /** Watches one key; the callback gets every put and delete. */
  async watchKey(key: string, onChange: WatchCallback, opts: WatchOptions = {}): Promise<Unwatch> {
    return this.resilientWatch(() => this.ns.watch().key(key), `key ${key}`, onChange, opts);
  }

  /** Watches every key below a prefix. */
  async watchPrefix(prefix: string, onChange: WatchCallback, opts: WatchOptions = {}): Promise<Unwatch> {
    return this.resilientWatch(() => this.ns.watch().prefix(prefix), `prefix ${prefix}`, onChange, opts);
  }

  /**
   * A watch that stays: reconnects resume from the last seen revision (the
   * etcd3 watch manager); a watch that etcd cancels (its start revision was
   * compacted away while it was disconnected) is created anew from now with
   * a jittered backoff, and then `onResync` re-reads what it watches, so no
   * change is missed. One log line per outage, not per retry.
   */
  private async resilientWatch(build: () => WatchBuilder, what: string, onChange: WatchCallback, opts: WatchOptions): Promise<Unwatch> {
    let closed = false;
    let current: Watcher | null = null;
    const outage = this.watchOutage;
    const attach = (watcher: Watcher) => {
      current = watcher;
      watcher.on('put', (kv) => onChange(kv.key.toString('utf8'), kv.value.toString('utf8')));
      watcher.on('delete', (kv) => onChange(kv.key.toString('utf8'), null));
      watcher.on('disconnected', (err) => {
        if (outage.fail())
          this.log.warn('etcd watches disconnected; each resumes from its last seen revision', {
            etcd: this.where,
            error: errorMessage(err),
          });
      });
      watcher.on('connected', () => {
        const ms = outage.recover();
        if (ms !== null) this.log.info('etcd watches resumed', { etcd: this.where, outageSec: Math.round(ms / 1000) });
      });
      watcher.on('error', (err) => {
        if (closed || current !== watcher) return;
        this.log.warn('etcd cancelled a watch (its history was compacted?); watching anew and re-reading', {
          watch: what,
          error: errorMessage(err),
        });
        void renew();
      });
    };
    const renew = async () => {
      for (let attempt = 1; !closed; attempt++) {
        try {
          const w = await build().create();
          if (closed) {
            await w.cancel().catch((err: unknown) =>
              this.log.warn('could not cancel an etcd watch made after its owner stopped watching', {
                etcd: this.where,
                error: errorMessage(err),
              }),
            );
            return;
          }
          attach(w);
          opts.onResync?.();
          return;
        } catch {
          await sleep(backoffDelay(attempt, ETCD_BACKOFF));
        }
      }
    };
    const first = build();
    if (opts.fromRevision !== undefined) first.startRevision(opts.fromRevision);
    attach(await this.call(`watching ${what}`, () => first.create()));
    return async () => {
      closed = true;
      await current?.cancel();
    };
  }

  /** Runs one etcd call; its failure becomes our error (castEtcdError) naming the step. */
  private async call<T>(step: string, run: () => PromiseLike<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw castEtcdError(err, step, this.where);
    }
  }

  /** Closes the connection; pending calls fail, and leases are no longer kept alive (their keys go at their TTL). */
  close(): void {
    for (const l of this.leases) l.release();
    this.leases.clear();
    this.client.close();
  }
}
