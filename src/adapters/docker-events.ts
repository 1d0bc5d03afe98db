/**
 * Docker's events stream as the adapters read it: newline-separated JSON
 * lines (also the shape of pull progress), and a follower that reconnects
 * with a backoff when dockerd restarts and replays what it missed. Kernel
 * deaths (docker.ts) and image changes (docker-images.ts) both follow it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { Backoff, type BackoffPolicy } from '../util/backoff.js';

/** The reconnect delays of the events stream: 250 ms doubling to 5 s; a stream that connects resets them. */
const EVENTS_BACKOFF: BackoffPolicy = { baseMs: 250, maxMs: 5000, jitter: 0 };

/** One event of Docker's events stream, as far as the agent reads it. */
export interface DockerEvent {
  Action?: string;
  status?: string;
  id?: string;
  time?: number;
  Actor?: { ID?: string };
}

/** The JSON values of a stream of newline-separated JSON lines (Docker's events and pull progress); other lines are skipped. */
export async function* jsonLines<T>(stream: AsyncIterable<Buffer | string>): AsyncGenerator<T> {
  let buffered = '';
  for await (const chunk of stream) {
    buffered += chunk.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (!line) continue;
      try {
        yield JSON.parse(line) as T;
      } catch {
        // not a JSON line
      }
    }
  }
}

/**
 * Follows Docker's events matching the filters until the signal aborts:
 * reconnects with a backoff when the stream ends (dockerd restarted), logging
 * the outage once, asks for the events since the last one seen, and calls
 * `onReconnect` after each reconnect (events may be lost across a restart).
 */
export async function followEvents(
  docker: Docker,
  filters: Record<string, string[]>,
  onEvent: (ev: DockerEvent) => void,
  o: { log: Logger; signal: AbortSignal; onReconnect?: () => void; what: string },
): Promise<void> {
  const { log, signal } = o;
  const delays = new Backoff(EVENTS_BACKOFF);
  let down = false;
  let since: number | null = null; // unix seconds of the last event seen, to replay what a reconnect would miss
  while (!signal.aborted) {
    try {
      const stream = (await docker.getEvents(since === null ? { filters } : { filters, since })) as NodeJS.ReadableStream &
        AsyncIterable<Buffer> & { destroy(): void };
      if (down) {
        log.info(`${o.what} is back`);
        o.onReconnect?.();
      }
      down = false;
      delays.reset();
      since ??= Math.floor(Date.now() / 1000);
      const onAbort = () => stream.destroy();
      signal.addEventListener('abort', onAbort, { once: true });
      for await (const ev of jsonLines<DockerEvent>(stream)) {
        if (typeof ev.time === 'number') since = ev.time;
        onEvent(ev);
      }
      signal.removeEventListener('abort', onAbort);
    } catch (err) {
      if (signal.aborted) return;
      if (!down) log.warn(`${o.what} lost; reconnecting`, { error: errorMessage(err) });
      down = true;
    }
    if (signal.aborted) return;
    await sleep(delays.next(), undefined, { signal }).catch(() => undefined); // an abort ends the wait early, which is its purpose
  }
}
