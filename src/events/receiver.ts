/**
 * EventReceiver is the manager's end of the agent -> manager events
 * (docs/wire-contract.rst, "Events"): a bound PULL socket that decodes the agents'
 * `[event name, agent id, msgpack(args)]` frames and hands them out as an
 * async iterable. Frames that do not decode are counted and skipped, never
 * thrown. `registerEventSink` tells the agents of a namespace where it is.
 */
import * as zmq from 'zeromq';
import { uncompressSync } from 'snappy';
import { errorMessage } from '../errors.js';
import { msgpackCodec, type Codec } from '../wire/codec.js';
import type { EtcdStore } from '../adapters/etcd.js';
import { EVENT_ADDR_KEY, MANAGER_KEY } from '../config/etcd-keys.js';

/** AgentEvent is one event as received by an {@link EventReceiver}. */
export interface AgentEvent {
  name: string;
  agentId: string;
  args: unknown[];
  /** Unix milliseconds when it arrived. */
  receivedAt: number;
}

/**
 * EventReceiver is a manager's event sink: a bound PULL socket that agents
 * push their events to, async-iterable as decoded {@link AgentEvent}s (frames
 * that do not decode are skipped and counted).
 */
export class EventReceiver implements AsyncIterable<AgentEvent> {
  private undecodable = 0;

  private constructor(
    private readonly socket: zmq.Pull,
    /** The endpoint actually bound, with a wildcard port resolved, e.g. `tcp://127.0.0.1:40123`. */
    readonly endpoint: string,
    private readonly codec: Codec,
  ) {}

  /** Binds a PULL socket at `endpoint` (`tcp://host:port`; port `*` picks a free one). */
  static async bind(endpoint: string, codec: Codec = msgpackCodec): Promise<EventReceiver> {
    const socket = new zmq.Pull({ linger: 0 });
    try {
      await socket.bind(endpoint);
    } catch (err) {
      socket.close();
      throw new Error(`cannot bind the event sink at ${endpoint}: ${errorMessage(err)}`, { cause: err });
    }
    return new EventReceiver(socket, socket.lastEndpoint ?? endpoint, codec);
  }

  /** `host:port` of the endpoint, the form agents read from `nodes/manager/event_addr`. */
  get hostPort(): string {
    return this.endpoint.replace(/^tcp:\/\//, '');
  }

  /** Frames skipped because they did not decode. */
  get skipped(): number {
    return this.undecodable;
  }

  /** The events as they arrive, until the receiver is closed. */
  async *[Symbol.asyncIterator](): AsyncIterator<AgentEvent> {
    try {
      for await (const [name, agentId, args] of this.socket) {
        if (!name || !agentId || !args) {
          this.undecodable++;
          continue;
        }
        let decoded: unknown;
        try {
          decoded = this.codec.decode(args);
        } catch {
          this.undecodable++;
          continue;
        }
        yield {
          name: name.toString('utf8'),
          agentId: agentId.toString('utf8'),
          args: Array.isArray(decoded) ? decoded : [decoded],
          receivedAt: Date.now(),
        };
      }
    } catch (err) {
      if (!this.socket.closed) throw err;
      // closed: the iteration ends
    }
  }

  /** Closes the socket; iterations end. */
  close(): void {
    if (!this.socket.closed) this.socket.close();
  }
}

/**
 * decodeHeartbeatImages decodes the `images` field of a heartbeat's agent_info
 * (snappy(msgpack([[name:tag, image id], ...]))); an empty list when it does not decode.
 */
export function decodeHeartbeatImages(images: unknown, codec: Codec = msgpackCodec): Array<[string, string]> {
  if (!Buffer.isBuffer(images) && !(images instanceof Uint8Array)) return [];
  try {
    const list = codec.decode(uncompressSync(Buffer.from(images)) as Buffer);
    return Array.isArray(list) ? (list as Array<[string, string]>) : [];
  } catch {
    return [];
  }
}

/**
 * registerEventSink registers an event sink in etcd as the manager (`nodes/manager` = id,
 * `nodes/manager/event_addr` = host:port); the agents of the namespace follow
 * it. The returned function removes both keys, each only if it still holds
 * what was put (another manager may have taken over meanwhile).
 */
export async function registerEventSink(etcd: EtcdStore, managerId: string, hostPort: string): Promise<() => Promise<void>> {
  await etcd.put(MANAGER_KEY, managerId);
  await etcd.put(EVENT_ADDR_KEY, hostPort);
  return async () => {
    await etcd.deleteIf(EVENT_ADDR_KEY, hostPort);
    await etcd.deleteIf(MANAGER_KEY, managerId);
  };
}
