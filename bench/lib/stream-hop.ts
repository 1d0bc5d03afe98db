/**
 * The streaming figure's anchor: a bare forwarding hop, "one more process
 * in the path" and nothing else. It reads a runner's output socket (PULL,
 * connected to the runner's published output port) and writes each record,
 * frames as they came, to a client (PUSH, bound), with no RPC, no parsing
 * and no buffering beyond ZeroMQ's own.
 *
 *   node dist/bench/lib/stream-hop.js RUNNER_OUT_ENDPOINT BIND_ENDPOINT
 *
 * Prints "ready" once bound; stops on SIGTERM or SIGINT.
 */
import * as zmq from 'zeromq';

const [from, to] = process.argv.slice(2);
if (!from || !to) {
  console.error('usage: node stream-hop.js RUNNER_OUT_ENDPOINT BIND_ENDPOINT');
  process.exit(2);
}
const pull = new zmq.Pull({ linger: 0 });
const push = new zmq.Push({ linger: 0 });
await push.bind(to);
pull.connect(from);
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    pull.close();
    push.close();
  });
}
console.log('ready');
try {
  for await (const frames of pull) await push.send(frames);
} catch (err) {
  if (!pull.closed && !push.closed) throw err;
}
