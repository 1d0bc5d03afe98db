/**
 * A proxy of the test's own in front of the real Docker socket, to make
 * Docker calls hang for real: while `holdDeletes` is on, a connection whose
 * request is a `DELETE` (a container removal) is held open and never
 * forwarded, as a stuck engine's would be; with `fail`, a request whose
 * line matches is answered with Docker's error (a 500 and its message)
 * instead, as an engine whose data root is full answers. Everything else
 * passes. The agent under test reaches it through DOCKER_HOST; closed after
 * the test.
 */
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { onCleanup, uniqueName } from './env.js';

export interface DockerProxy {
  /** `unix://...` for DOCKER_HOST. */
  host: string;
  holdDeletes(on: boolean): void;
  /** Answers requests whose request line (`POST /v1.47/images/load?...`) matches `line` with a 500 and `message`; null: none. */
  fail(line: RegExp | null, message?: string): void;
  /** Requests held so far. */
  held(): number;
  /** Requests answered with an error so far. */
  failed(): number;
}

export async function dockerProxy(target = '/var/run/docker.sock'): Promise<DockerProxy> {
  const socketPath = path.join(os.tmpdir(), `${uniqueName('docker-proxy')}.sock`);
  const sockets = new Set<net.Socket>();
  let holding = false;
  let held = 0;
  let failing: { line: RegExp; message: string } | null = null;
  let failed = 0;
  const server = net.createServer((client) => {
    sockets.add(client);
    let upstream: net.Socket | null = null;
    let stalled = false;
    client.on('data', (d: Buffer) => {
      if (stalled) return;
      if (holding && d.subarray(0, 7).toString('latin1') === 'DELETE ') {
        stalled = true; // this connection's request never reaches Docker, and no answer comes
        held++;
        return;
      }
      const requestLine = d.subarray(0, Math.max(0, d.indexOf('\r\n'))).toString('latin1');
      if (failing && failing.line.test(requestLine)) {
        stalled = true; // the rest of this request is dropped; Docker never sees it
        failed++;
        upstream?.destroy();
        const body = JSON.stringify({ message: failing.message });
        client.end(
          `HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
        return;
      }
      if (!upstream) {
        upstream = net.connect(target);
        sockets.add(upstream);
        upstream.on('data', (u: Buffer) => client.write(u));
        upstream.on('close', () => client.destroy());
        upstream.on('error', () => client.destroy());
      }
      upstream.write(d);
    });
    client.on('close', () => upstream?.destroy());
    client.on('error', () => upstream?.destroy());
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  onCleanup(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
    await fs.rm(socketPath, { force: true });
  });
  return {
    host: `unix://${socketPath}`,
    holdDeletes: (on) => void (holding = on),
    fail: (line, message = 'engine error') => void (failing = line ? { line, message } : null),
    held: () => held,
    failed: () => failed,
  };
}
