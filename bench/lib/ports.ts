/**
 * Free TCP ports on the loopback, for the servers the benchmarks and the
 * tests start (the tests' helpers re-export this one).
 *
 * A port the kernel hands out for `listen(0)` comes from the ephemeral range,
 * the same range it takes the local port of every outgoing connection from
 * (and Docker its published ports): between the check and the bind, the
 * agent's own connection to etcd could take it, and the bind fails with
 * EADDRINUSE. So the ports come from below that range, picked at random and
 * never handed out twice in one process, and checked by listening once.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { tryListen } from '../../src/cli/check/checks.js';

const LOWEST = 20_000;
const given = new Set<number>();

/** The first port of the kernel's ephemeral range (32768 where it cannot be read). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

const HIGHEST = ephemeralLow() - 1;

/** A TCP port that was free a moment ago, outside the ephemeral range where there is room. */
export async function freePort(): Promise<number> {
  if (HIGHEST - LOWEST >= 1000) {
    for (let i = 0; i < 200; i++) {
      const port = LOWEST + Math.floor(Math.random() * (HIGHEST - LOWEST + 1));
      if (given.has(port)) continue;
      given.add(port); // before the check, so that concurrent callers never share one
      if ((await tryListen('127.0.0.1', port)) === null) return port;
    }
  }
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}
