/**
 * Multi-kernel sessions as a 24.09 manager makes them (docs/sessions.rst):
 * the cluster info and configs of main1, sub1, ... on a session network,
 * and what the tests read of the kernels' containers.
 */
import { generateKeyPairSync } from 'node:crypto';
import Docker from 'dockerode';
import { expect } from 'chai';
import { modernMethods } from '../../src/rpc/modern-methods.js';
import type { ModernKernelResult } from '../../src/rpc/modern-methods.js';
import { consoleText } from './run.js';
import { modernKernelConfig, testImageRef, type ModernManager } from './modern-manager.js';
import { uniqueName } from './env.js';

/** A session of this test: its id, network name and kernel ids by cluster hostname. */
export interface TestSession {
  sessionId: string;
  network: string;
  ids: Record<string, string>;
}

/** Names a session of `hosts` (main1, sub1, ...) with a network name as 24.09 gives it. */
export function newSession(hosts: string[]): TestSession {
  const sessionId = uniqueName('sess');
  return { sessionId, network: `bai-singlenode-${sessionId}`, ids: Object.fromEntries(hosts.map((h) => [h, uniqueName(h)])) };
}

/** The config of one kernel of a session: role and index from its hostname (`sub2` is role sub, index 2). */
export function memberConfig(host: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const [, role, idx] = /^([a-z]+)(\d+)$/.exec(host)!;
  return modernKernelConfig({ cluster_role: role, cluster_idx: Number(idx), cluster_hostname: host, ...extra });
}

/** An SSH key pair as 24.09's manager makes one per session: RSA 2048, PEM (PKCS#1) and an `ssh-rsa` line. */
export function managerKeypair(): { public_key: string; private_key: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = publicKey.export({ format: 'jwk' });
  const mpint = (b64: string): Buffer => {
    const b = Buffer.from(b64, 'base64url');
    return b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b;
  };
  const str = (b: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  const blob = Buffer.concat([str(Buffer.from('ssh-rsa')), str(mpint(jwk.e!)), str(mpint(jwk.n!))]);
  return {
    public_key: `ssh-rsa ${blob.toString('base64')}`,
    private_key: privateKey.export({ type: 'pkcs1', format: 'pem' }) as string,
  };
}

/**
 * create_kernels of the whole session as 24.09 sends it: network_name set, and the session's key pair
 * (`sshKeypair`; null, as a manager without one sends, makes the agent make one).
 */
export function createSession(
  m: ModernManager,
  s: TestSession,
  configs: Record<string, Record<string, unknown>> = {},
  network: string | null = s.network,
  sshKeypair: Record<string, unknown> | null = null,
): Promise<ModernKernelResult[]> {
  const hosts = Object.keys(s.ids);
  const replicas: Record<string, number> = {};
  for (const h of hosts) replicas[h.replace(/\d+$/, '')] = (replicas[h.replace(/\d+$/, '')] ?? 0) + 1;
  return m.client.call(
    modernMethods.create_kernels,
    s.sessionId,
    hosts.map((h) => s.ids[h]!),
    hosts.map((h) => configs[h] ?? memberConfig(h)),
    { mode: 'single-node', size: hosts.length, replicas, network_name: network, ssh_keypair: sshKeypair, cluster_ssh_port_mapping: null },
    Object.fromEntries(hosts.map((h) => [s.ids[h]!, testImageRef()])),
  );
}

/** Runs Python in a kernel to its end and returns its stdout; fails the test when the run does not exit 0. */
export async function py(m: ModernManager, s: TestSession, host: string, code: string): Promise<string> {
  const r = await m.executeToEnd(s.sessionId, s.ids[host]!, code, uniqueName('run'));
  const out = consoleText([r], 'stdout');
  expect(r, `${host}: ${consoleText([r], 'stderr')}`).to.include({ status: 'finished', exitCode: 0 });
  return out;
}

/** Python that runs `command` through `ssh <host>` and prints its output (the session's ssh, docs/sessions.rst). */
export function sshCommand(host: string, command: string): string {
  return `import subprocess
r = subprocess.run(['ssh', ${JSON.stringify(host)}, ${JSON.stringify(command)}], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
print(r.stdout, end='')
if r.returncode != 0:
    raise SystemExit('ssh ${host} exited with %d: %s' % (r.returncode, r.stderr))`;
}

/** Python that starts, in the background, a TCP server on `port` answering each line `a b` with sum(i*i for i in range(a, b)). */
export function squareServer(port: number): string {
  const server = `
import socket
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); srv.bind(('', ${port})); srv.listen(8)
while True:
    c, _ = srv.accept()
    with c:
        line = c.makefile().readline().split()
        if len(line) == 2:  # the readiness probe below sends nothing
            a, b = map(int, line)
            c.sendall(f'{sum(i * i for i in range(a, b))}\\n'.encode())
`;
  return `import subprocess, sys, socket, time
subprocess.Popen([sys.executable, '-c', ${JSON.stringify(server)}], start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(100):
    try:
        socket.create_connection(('127.0.0.1', ${port}), 1).close(); break
    except OSError:
        time.sleep(0.05)
print('listening')`;
}

/** The container of a kernel: its address on a network and that network's gateway. */
export async function addressOn(kernelId: string, network: string): Promise<{ ip: string; gateway: string } | null> {
  const docker = new Docker();
  const [c] = await docker.listContainers({ filters: { label: [`io.compute-agent.kernel-id=${kernelId}`] } });
  if (!c) return null;
  const info = await docker.getContainer(c.Id).inspect();
  const on = info.NetworkSettings.Networks[network];
  return on ? { ip: on.IPAddress, gateway: on.Gateway } : null;
}
