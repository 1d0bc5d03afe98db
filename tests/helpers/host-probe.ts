/**
 * What the network security tests probe with: a Python snippet a kernel runs
 * to try TCP connections, the node's own addresses, and a host listener that
 * counts what reached it (tests/security/kernel-network.test.ts,
 * sessions-network.test.ts).
 */
import net from 'node:net';
import os from 'node:os';
import { onCleanup } from './env.js';

/** Python for a kernel: tries a TCP connection to each target at once, prints `host:port -> open|timeout|<error>` as JSON. */
export function probeCode(targets: Array<[string, number]>): string {
  return `
import json, socket
from concurrent.futures import ThreadPoolExecutor
def probe(t):
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect((t[0], t[1])); return 'open'
    except socket.timeout:
        return 'timeout'
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()
targets = ${JSON.stringify(targets)}
with ThreadPoolExecutor(len(targets)) as ex:
    print(json.dumps({f'{h}:{p}': r for (h, p), r in zip(targets, ex.map(probe, targets))}))
`;
}

/** The node's IPv4 addresses other than loopback. */
export function hostAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((a): a is os.NetworkInterfaceInfo => !!a && a.family === 'IPv4' && !a.internal)
    .map((a) => a.address);
}

/** A TCP server of the host on every address; counts the connections it accepts. */
export async function hostListener(): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0;
  const server = net.createServer((s) => {
    accepted++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
  onCleanup(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as net.AddressInfo).port, accepted: () => accepted };
}
