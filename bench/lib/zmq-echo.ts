/**
 * The limit of our socket library for the RPC figure: a bare zeromq.js
 * ROUTER that answers aiozmq.rpc requests with no msgpack and no dispatch.
 * It receives a request, copies the header (is_error 0 appended), and sends
 * back the envelope, that header and the args frame without its first byte
 * (for `ping("ping")` that is the string `ping` returns), as
 * bench/native/zmq-echo.c does in C. The receive loop and the send (zero send
 * timeout, waiting only when refused) are the ones the agent's router uses.
 *
 *   node dist/bench/lib/zmq-echo.js ENDPOINT
 *
 * Prints "ready" once bound; stops on SIGTERM or SIGINT.
 */
import * as zmq from 'zeromq';
import { eagerSender } from '../../src/wire/send-queue.js';

const endpoint = process.argv[2];
if (!endpoint) {
  console.error('usage: node zmq-echo.js ENDPOINT');
  process.exit(2);
}
const sock = new zmq.Router({ sendTimeout: 0, sendHighWaterMark: 0, receiveHighWaterMark: 0 });
await sock.bind(endpoint);
const sender = eagerSender(sock, -1);
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => sock.close());
console.log('ready');
try {
  for await (const frames of sock) {
    const h = frames.findIndex((f) => f.length === 16);
    if (h < 0 || h + 2 >= frames.length || frames[h + 2]!.length < 1) continue; // not a request: dropped
    const header = Buffer.allocUnsafe(17);
    frames[h]!.copy(header, 0, 0, 16);
    header[16] = 0;
    await sender.send([...frames.slice(0, h), header, frames[h + 2]!.subarray(1)]);
  }
} catch (err) {
  if (!sock.closed) throw err;
}
