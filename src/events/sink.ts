/**
 * EventSink is what every event transport of the agent is: the PUSH
 * publisher of 2018 managers (src/events/publisher.ts) and the Redis stream
 * of modern ones (src/events/redis-stream.ts). Emitting never blocks and
 * never throws: an event that cannot go out is dropped and counted.
 */

/** Counters of a sink: events handed on, and events dropped. */
export interface SinkStats {
  queued: number;
  dropped: number;
}

export interface EventSink {
  /** Sends an event; false when it was dropped. */
  emit(name: string, args: unknown[]): boolean;
  snapshot(): SinkStats;
  /** Waits up to `lingerMs` for queued events to leave, then lets go of the transport. */
  close(lingerMs?: number): Promise<void>;
}
