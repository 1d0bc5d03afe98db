/**
 * A TCP proxy of the test's own in front of a real service, to inject
 * network faults for real: `stallAfter(n)` lets each connection's answers
 * through until `n` bytes and then holds the rest (the connection stays open
 * and silent, as a stuck registry's does).
 */
import net from 'node:net';
import { onCleanup } from './env.js';

export interface TestProxy {
  port: number;
  /** Connections opened through the proxy so far. */
  connections(): number;
}

/** Starts a proxy on 127.0.0.1 (or `o.host`; a free port) to `target`; closed after the test. */
export async function tcpProxy(target: { host: string; port: number }, o: { stallAfter?: number; host?: string } = {}): Promise<TestProxy> {
  const sockets = new Set<net.Socket>();
  let count = 0;
  const server = net.createServer((client) => {
    count++;
    const upstream = net.connect(target);
    sockets.add(client).add(upstream);
    let passed = 0;
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d: Buffer) => {
      if (o.stallAfter === undefined) return void client.write(d);
      const room = o.stallAfter - passed;
      if (room > 0) client.write(d.subarray(0, room));
      passed += d.length;
      if (passed >= o.stallAfter) upstream.pause(); // hold the rest; nothing more goes to the client
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, o.host ?? '127.0.0.1', resolve));
  onCleanup(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as net.AddressInfo).port, connections: () => count };
}
