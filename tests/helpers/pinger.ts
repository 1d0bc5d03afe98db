/**
 * A pinger in a process of its own: `node dist/tests/helpers/pinger.js
 * tcp://host:port` sends `ping` every 10 ms, one at a time, until SIGTERM,
 * prints `pinging` once the first ping is answered (the caller waits for
 * it), and at the end prints `{n, p50, p99, max}` (ms) as JSON. Timing from a separate
 * process keeps the caller's own stalls (decoding big replies) out of the
 * agent's figures.
 */
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';

const endpoint = process.argv[2];
if (!endpoint) {
  console.error('usage: pinger tcp://host:port');
  process.exit(2);
}
const client = new AgentClient(endpoint, { timeoutMs: 60_000 });
const ms: number[] = [];
let on = true;
process.once('SIGTERM', () => {
  on = false;
});
while (on) {
  const t0 = process.hrtime.bigint();
  await client.call(methods.ping, 'x');
  ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  if (ms.length === 1) console.log('pinging');
  await new Promise((r) => setTimeout(r, 10));
}
ms.sort((a, b) => a - b);
const at = (q: number) => ms[Math.min(ms.length - 1, Math.floor(ms.length * q))] ?? null;
console.log(JSON.stringify({ n: ms.length, p50: at(0.5), p99: at(0.99), max: ms.at(-1) ?? null }));
client.close();
process.exit(0);
