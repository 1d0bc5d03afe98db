/**
 * Hostile input to the paths this agent opened for node health and drain:
 * the HTTP endpoints on the metrics port answer odd methods, odd paths,
 * a request line that is not HTTP, a huge URL and huge headers with a clean
 * 4xx (and the agent goes on serving /livez and RPC); a manager's drain call
 * with bad parameters, on both generations, gets a ParametersError naming
 * the parameter, and the node does not drain.
 */
import net from 'node:net';
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { CallosumClient } from '../../src/rpc/callosum-client.js';
import { WireErrors } from '../../src/errors.js';
import { freePort, onCleanup, remoteError, requireEtcd, startAgent } from '../helpers/env.js';

/** Sends raw bytes to the port and resolves with what comes back until the server closes (or 5 s). */
function raw(port: number, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => socket.destroy(), 5000);
    socket.on('data', (d) => (got += d.toString('latin1')));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' || err.code === 'EPIPE' ? undefined : reject(err)));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    socket.end(bytes);
  });
}

const status = (reply: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1] ?? 0);

describe('security: health endpoints and drain calls under hostile input', function () {
  this.timeout(90_000);
  before(requireEtcd);

  it('answers odd methods, paths, non-HTTP bytes, huge URLs and headers with a clean 4xx and keeps serving', async () => {
    const metricsPort = await freePort();
    const t = await startAgent({ metricsPort });
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/readyz`, { method });
      expect(res.status, method).to.equal(405);
      expect(res.headers.get('allow')).to.equal('GET, HEAD');
    }
    const head = await fetch(`http://127.0.0.1:${metricsPort}/livez`, { method: 'HEAD' });
    expect(head.status).to.equal(200);
    for (const p of ['/livez/', '/livez/../metrics/x', '//readyz', '/readyz%00', '/%2e%2e/etc/passwd', '/' + 'a'.repeat(4000)])
      expect((await fetch(`http://127.0.0.1:${metricsPort}${p}`)).status, p).to.equal(404);
    expect(status(await raw(metricsPort, 'TRACE /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))).to.equal(405);
    expect(await raw(metricsPort, 'CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n'), 'CONNECT: the connection is closed').to.equal('');
    expect(status(await raw(metricsPort, 'NOT HTTP AT ALL\r\n\r\n'))).to.equal(400);
    expect(status(await raw(metricsPort, Buffer.from([0, 1, 2, 255, 254, 13, 10, 13, 10])))).to.equal(400);
    expect(status(await raw(metricsPort, `GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(64 * 1024)}\r\n\r\n`))).to.equal(431);
    expect(status(await raw(metricsPort, `GET /${'u'.repeat(64 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`))).to.equal(431);
    expect(status(await raw(metricsPort, `GET /livez HTTP/1.1\r\n${'H: v\r\n'.repeat(5000)}\r\n`))).to.be.oneOf([400, 431]);
    // Still serving, over HTTP and RPC.
    expect((await fetch(`http://127.0.0.1:${metricsPort}/livez`)).status).to.equal(200);
    expect(await t.client.call(methods.ping, 'still')).to.equal('still');
  });

  it("refuses a manager's drain call with bad parameters (both generations) with a ParametersError naming deadline, and does not drain", async () => {
    const t = await startAgent();
    for (const args of [['soon'], [-1], [1e12], [{ deadline: 5 }], [5, 'extra'], [Number.NaN]]) {
      const err = await remoteError(t.client.callRaw('drain', args));
      expect(err.remoteType, JSON.stringify(args)).to.equal(WireErrors.Parameters);
      expect(err.remoteMessage, JSON.stringify(args)).to.match(/deadline|argument/);
    }
    const modern = new CallosumClient(`tcp://127.0.0.1:${t.port}`, { timeoutMs: 10_000 });
    onCleanup(() => modern.close());
    const bad = await remoteError(modern.callRaw('drain', ['tomorrow']));
    expect(bad.remoteType).to.equal('ParametersError');
    expect(bad.remoteRepr).to.match(/deadline/);
    expect(t.agent.kernelService!.list().length).to.equal(0);
    expect(await t.etcd.get(`nodes/agents/${t.agentId}/drain`).string(), 'no drain was recorded').to.equal(null);
    expect((await t.client.call(methods.undrain)).draining).to.equal(false);
  });
});
