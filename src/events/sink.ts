/**
 * EventSink is what every event transport of the agent is: the PUSH
 * publisher of 2018 managers (src/events/publisher.ts) and the Redis stream
 * of modern ones (src/events/redis-stream.ts). Emitting never blocks and
 * never throws: an event that cannot go out is dropped and counted.
 */

/**
 * Why a sink dropped an event: no transport known yet (`no_sink`), its
 * bounded queue full (`queue_full`), or the transport refused or failed it
 * (the PUSH socket at its high-water mark, a failed XADD) or had not taken
 * it when the sink closed (`send_failed`).
 */
export const DROP_REASONS = ['no_sink', 'queue_full', 'send_failed'] as const;

/** One of {@link DROP_REASONS}. */
export type DropReason = (typeof DROP_REASONS)[number];

/** Counters of a sink: events handed on, and events dropped (in all and by reason). */
export interface SinkStats {
  queued: number;
  dropped: number;
  droppedBy: Record<DropReason, number>;
}

/** Counters of a sink that has sent and dropped nothing. */
export function emptySinkStats(): SinkStats {
  return { queued: 0, dropped: 0, droppedBy: { no_sink: 0, queue_full: 0, send_failed: 0 } };
}

/** A copy of a sink's counters, for snapshots. */
export function copySinkStats(s: SinkStats): SinkStats {
  return { ...s, droppedBy: { ...s.droppedBy } };
}

/** Counts `n` events dropped for `reason`. */
export function countDropped(s: SinkStats, reason: DropReason, n = 1): void {
  s.dropped += n;
  s.droppedBy[reason] += n;
}

export interface EventSink {
  /** Sends an event; false when it was dropped. */
  emit(name: string, args: unknown[]): boolean;
  snapshot(): SinkStats;
  /** Waits up to `lingerMs` for queued events to leave, then lets go of the transport. */
  close(lingerMs?: number): Promise<void>;
}
