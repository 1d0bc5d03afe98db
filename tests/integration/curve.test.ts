/**
 * Authenticated RPC: CURVE on the agent's ROUTER with the process-wide ZAP
 * handler admitting only the manager keys listed in the settings, two agents
 * in one process each with its own list, a live change of the list, the
 * agent's key in heartbeats, events over CURVE, and `agent keygen`.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import * as zmq from 'zeromq';
import type { Namespace } from 'etcd3';
import { generateKeyPairFile, loadKeyPair, type KeyPair } from '../../src/config/keys.js';
import { RpcTimeoutError } from '../../src/errors.js';
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import { zapDomains } from '../../src/wire/zap.js';
import { eventually, onCleanup, REPO_ROOT, requireEtcd, spawnAgent, startAgent, type TestAgent } from '../helpers/env.js';
import { sink } from '../helpers/sink.js';
import { capturedLog } from '../helpers/log-capture.js';

async function keyDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-keys-'));
  onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Starts an agent with CURVE on, admitting `allowed`; returns it with its key pair. */
async function curveAgent(
  allowed: string[],
  before?: (ns: Namespace) => Promise<void>,
): Promise<TestAgent & { keys: KeyPair; keyFile: string }> {
  const file = path.join(await keyDir(), 'agent.key');
  const keys = await generateKeyPairFile(file);
  const t = await startAgent({}, async (ns) => {
    await ns.put('config/agent/rpc_keypair_file').value(file);
    await ns.put('config/agent/rpc_allowed_keys').value(allowed.join(','));
    await before?.(ns);
  });
  return { ...t, keys, keyFile: file };
}

function curveClient(t: { port: number; keys: KeyPair }, client: KeyPair, timeoutMs = 5000): AgentClient {
  const c = new AgentClient(`tcp://127.0.0.1:${t.port}`, { timeoutMs, curve: { serverKey: t.keys.publicKey, ...client } });
  onCleanup(() => c.close());
  return c;
}

describe('authenticated RPC (CURVE)', function () {
  this.timeout(30_000);
  before(requireEtcd);

  it('answers a listed manager key, gives a wrong key and a plain client no reply and counts the refusal, per agent', async () => {
    const managerA = zmq.curveKeyPair();
    const managerB = zmq.curveKeyPair();
    const a = await curveAgent([managerA.publicKey]);
    const b = await curveAgent([managerB.publicKey]); // a second agent in this process: one ZAP handler, two domains
    expect(zapDomains()).to.have.length.of.at.least(2);

    expect(await curveClient(a, managerA).call(methods.ping, 'a')).to.equal('a');
    expect(await curveClient(b, managerB).call(methods.ping, 'b')).to.equal('b');
    const receivedBefore = a.agent.stats().rpc!.received;

    const wrong = curveClient(a, managerB, 1500); // B's manager is not on A's list
    const err = await wrong.call(methods.ping, 'x').catch((e: unknown) => e);
    expect(err).to.be.instanceOf(RpcTimeoutError);
    await eventually('the refusal to be counted', () => a.agent.stats().rpc!.authRefused >= 1);
    const plain = new AgentClient(`tcp://127.0.0.1:${a.port}`, { timeoutMs: 1500 });
    onCleanup(() => plain.close());
    expect(await plain.call(methods.ping, 'x').catch((e: unknown) => e)).to.be.instanceOf(RpcTimeoutError);
    expect(a.agent.stats().rpc!.received).to.equal(receivedBefore); // nothing reached the dispatcher
    expect(b.agent.stats().rpc!.authRefused).to.equal(0);
    expect(a.agent.stats().rpc!.authAdmitted).to.be.at.least(1);

    // The allow-list is live: list B's manager on A, and a new connection with its key is answered.
    await a.etcd.put('config/agent/rpc_allowed_keys').value(`${managerA.publicKey} ${managerB.publicKey}`);
    await eventually(
      'the new key to be admitted',
      async () =>
        (await curveClient(a, managerB, 1000)
          .call(methods.ping, 'late')
          .catch(() => null)) === 'late',
      15_000,
      200,
    );
  });

  it('answers a stock aiozmq client that reads the agent key from its file with pyzmq and has a listed key, and no other', async function () {
    const manager = zmq.curveKeyPair();
    const a = await curveAgent([manager.publicKey]);
    const script = path.join(REPO_ROOT, 'tests/interop/aiozmq_curve_client.py');
    const call = async (pair: KeyPair) =>
      JSON.parse(
        (
          await promisify(execFile)('/usr/bin/python3', [script, `tcp://127.0.0.1:${a.port}`, a.keyFile, pair.publicKey, pair.secretKey], {
            timeout: 20_000,
          })
        ).stdout,
      ) as Record<string, string>;
    expect(await call(manager)).to.deep.equal({ ping: 'hello' });
    expect(await call(zmq.curveKeyPair())).to.deep.equal({ error: 'TimeoutError' });
    expect(a.agent.stats().rpc!.authRefused).to.be.at.least(1);
  });

  it('puts its public key in heartbeats and sends events over CURVE to a manager whose key is in etcd', async () => {
    const manager = zmq.curveKeyPair();
    let agentKey = '';
    const s = await sink({ secretKey: manager.secretKey, allows: (k) => k === agentKey });
    const file = path.join(await keyDir(), 'agent.key');
    agentKey = (await generateKeyPairFile(file)).publicKey;
    const t = await startAgent({}, async (ns) => {
      await ns.put('config/agent/rpc_keypair_file').value(file);
      await ns.put('config/agent/rpc_allowed_keys').value(manager.publicKey);
      await ns.put('config/agent/heartbeat_interval').value('0.2');
      await ns.put('nodes/manager/public_key').value(manager.publicKey);
      await ns.put('nodes/manager/event_addr').value(s.addr);
    });
    expect(t.agent.publicKey).to.equal(agentKey);
    const hb = await s.next('instance_heartbeat', 0, 10_000);
    expect((hb.args[0] as Record<string, unknown>).public_key).to.equal(agentKey);
  });

  it('sends no event to a CURVE sink when the manager key is not in etcd (plain PUSH), and none with the wrong key', async () => {
    const manager = zmq.curveKeyPair();
    const s = await sink({ secretKey: manager.secretKey, allows: () => true });
    const log = capturedLog();
    const t = await startAgent(
      {},
      async (ns) => {
        await ns.put('config/agent/heartbeat_interval').value('0.2');
        await ns.put('nodes/manager/event_addr').value(s.addr);
      },
      log.logger,
    );
    await t.agent.afterHeartbeats(4); // beats that a sink taking them would have had
    expect(s.events).to.have.length(0);
    await t.etcd.put('nodes/manager/public_key').value(zmq.curveKeyPair().publicKey); // a key, but not the sink's
    await log.waitFor(/^(?=.*"message":"sending events to the manager")(?=.*"curve":true)/);
    await t.agent.afterHeartbeats(4);
    expect(s.events).to.have.length(0);
    await t.etcd.put('nodes/manager/public_key').value(manager.publicKey); // the right key: a fresh pair of the agent's own
    await s.next('instance_heartbeat', 0, 10_000);
  });

  it('refuses to start with a key file others may read, or with no allowed key', async () => {
    const file = path.join(await keyDir(), 'agent.key');
    await generateKeyPairFile(file);
    await fs.chmod(file, 0o644);
    const open = await startAgent({}, async (ns) =>
      ns
        .put('config/agent/rpc_keypair_file')
        .value(file)
        .then(() => undefined),
    ).catch((e: Error) => e);
    expect(String(open)).to.match(/may be read by others .*chmod 600/);
    await fs.chmod(file, 0o600);
    const none = await startAgent({}, async (ns) =>
      ns
        .put('config/agent/rpc_keypair_file')
        .value(file)
        .then(() => undefined),
    ).catch((e: Error) => e);
    expect(String(none)).to.match(/rpc_allowed_keys is empty/);
  });

  it('agent keygen writes a 0600 ZeroMQ certificate, prints the public key and never overwrites', async () => {
    const file = path.join(await keyDir(), 'k.key');
    const gen = spawnAgent(['keygen', '--out', file]);
    let out = '';
    gen.child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    expect(await gen.exited).to.equal(0);
    expect((await fs.stat(file)).mode & 0o777).to.equal(0o600);
    const pair = await loadKeyPair(file);
    expect(out.trim()).to.equal(pair.publicKey);
    expect(await fs.readFile(file, 'utf8')).to.match(/^curve\n {4}public-key = "[^"]{40}"\n {4}secret-key = "[^"]{40}"$/m);
    const again = spawnAgent(['keygen', '--out', file]);
    expect(await again.exited).to.equal(1);
    expect(again.stderr()).to.match(/exists already/);
    expect((await loadKeyPair(file)).secretKey).to.equal(pair.secretKey);
  });
});
