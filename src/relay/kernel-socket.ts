/**
 * The bounds on what the agent reads from a kernel's ports (docs/security.rst):
 * every ZeroMQ socket the relays connect to a kernel has a message size limit
 * (ZMQ_MAXMSGSIZE), so a frame over it is refused by libzmq from its length
 * header, before any of it is held, and the connection is cut. libzmq does
 * not reconnect after such a cut (a protocol error ends the connection for
 * good, measured: no `connect:retry` follows the `disconnect`), so
 * {@link guardCuts} tells the relay and connects the socket again.
 */
import type * as zmq from 'zeromq';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { MAX_RECORD_BYTES } from './output.js';

/**
 * The largest frame the agent takes from a kernel's runner (port 2001) or
 * terminal output (2003): the record cut, and headroom so that a record just
 * over the cut is still truncated with its marker rather than cut off the wire.
 */
export const KERNEL_FRAME_LIMIT = MAX_RECORD_BYTES + 64 * 1024;

/**
 * The largest frame a socket that only sends to a kernel (the PUSH on 2000,
 * the PUB on 2002) takes from it: a runner sends it nothing but a
 * subscription. libzmq queues what such a socket receives without reading
 * it (measured: 100 frames of 10 MiB to a PUSH stayed in the agent, 1 GiB).
 */
export const SEND_ONLY_FRAME_LIMIT = 1024;

/**
 * How long after a `disconnect` libzmq has to show it is reconnecting
 * (`connect:retry`, emitted at once when it plans one) before the relay
 * takes the disconnect for a cut; also the pace of reconnections to a kernel
 * that sends oversized frames over and over.
 */
const CUT_CONFIRM_MS = 1000;

/** A socket connected to a kernel, as {@link guardCuts} watches it. */
export interface KernelSocket {
  socket: zmq.Socket;
  endpoint: string;
  /** The kernel's port, for the report: "port 2001". */
  port: string;
  /** The socket's `maxMessageSize`. */
  limit: number;
}

/**
 * Watches a socket connected to a kernel for cuts (a disconnect libzmq does
 * not follow with a reconnection: a frame over the socket's
 * `maxMessageSize`, or a peer that broke the framing), logs each one
 * (warn, once per cut), calls `onCut` with the line, and connects the socket
 * again.
 */
export function guardCuts(k: KernelSocket, log: () => Logger, onCut: (line: string) => void = () => {}): void {
  const { socket } = k;
  let timer: NodeJS.Timeout | null = null;
  const settle = () => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  socket.events.on('disconnect', () => {
    settle();
    timer = setTimeout(() => {
      timer = null;
      if (socket.closed) return;
      const line = cutLine(k.port, k.limit);
      log().warn(line, { endpoint: k.endpoint, limit: k.limit });
      try {
        // The cut connection's endpoint stays listed: a SUB connected to it again made no connection until it was dropped (measured).
        socket.disconnect(k.endpoint);
      } catch {
        // not listed any more: nothing to drop
      }
      try {
        socket.connect(k.endpoint);
      } catch (err) {
        if (!socket.closed)
          log().error('could not reconnect to the kernel after a cut', { endpoint: k.endpoint, error: errorMessage(err) });
      }
      try {
        onCut(line);
      } catch (err) {
        log().error('the relay failed reporting a cut', { error: errorMessage(err), stack: err instanceof Error ? err.stack : undefined });
      }
    }, CUT_CONFIRM_MS);
    timer.unref();
  });
  // libzmq emits `connect:retry` as it plans a reconnection (a peer that went away): not a cut.
  for (const type of ['connect:retry', 'connect:delay', 'connect'] as const) socket.events.on(type, settle);
}

/** The line a cut is reported with (in the log, and on the stderr of the run going on). */
function cutLine(port: string, limit: number): string {
  return `the kernel sent a record larger than ${limit} bytes (or broke ZeroMQ's framing) on ${port}: the agent dropped it unread, cut the connection and reconnected`;
}
