/**
 * The agent and etcd, both real: keys under the namespace, waiting for etcd,
 * and deregistration on SIGTERM of the real CLI process.
 */
import { expect } from 'chai';
import { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import {
  ETCD_ADDR,
  eventually,
  freePort,
  onCleanup,
  requireEtcd,
  spawnAgent,
  startAgent,
  tempScratch,
  testEtcd,
  uniqueName,
} from '../helpers/env.js';

describe('agent and etcd', () => {
  before(requireEtcd);

  it('registers itself as running with its ip under /sorna/<namespace>/', async () => {
    const { etcd, agentId } = await startAgent();
    expect(await etcd.get(`nodes/agents/${agentId}`).string()).to.equal('running');
    expect(await etcd.get(`nodes/agents/${agentId}/ip`).string()).to.equal('127.0.0.1');
  });

  it('fails to start, naming the key, when an etcd setting is invalid', async () => {
    let err: unknown;
    await startAgent({}, async (etcd) => {
      await etcd.put('config/agent/heartbeat_interval').value('often');
    }).catch((e: unknown) => (err = e));
    expect((err as Error)?.message).to.match(/config\/agent\/heartbeat_interval: "often" is not a number/);
  });

  it('waits for etcd, logging that it waits, and stops cleanly on SIGTERM meanwhile', async () => {
    const dead = await freePort();
    const agent = spawnAgent([
      '--etcd-addr',
      `127.0.0.1:${dead}`,
      '--scratch-root',
      await tempScratch(),
      '--agent-port',
      String(await freePort()),
    ]);
    await agent.waitFor(/waiting for etcd/);
    agent.child.kill('SIGTERM');
    expect(await agent.exited).to.equal(0);
    expect(agent.stderr().match(/waiting for etcd/g)).to.have.length(1); // once, not once per retry
  });

  it('deregisters on SIGTERM and keeps the node-level settings', async () => {
    const namespace = uniqueName('test');
    const agentId = uniqueName('i-test');
    const { ns } = testEtcd(namespace);
    await ns.put(`nodes/agents/${agentId}/config/heartbeat_interval`).value('2');
    const port = await freePort();
    const agent = spawnAgent(
      [
        '--namespace',
        namespace,
        '--agent-id',
        agentId,
        '--agent-port',
        String(port),
        '--bind-host',
        '127.0.0.1',
        '--scratch-root',
        await tempScratch(),
        '--log-format',
        'json',
      ],
      { BACKEND_ETCD_ADDR: ETCD_ADDR },
    );
    await agent.waitFor(/"message":"agent running"/);
    expect(await ns.get(`nodes/agents/${agentId}`).string()).to.equal('running');
    const client = new AgentClient(`tcp://127.0.0.1:${port}`);
    onCleanup(() => client.close());
    expect(await client.call(methods.ping, 'up')).to.equal('up');

    agent.child.kill('SIGTERM');
    expect(await agent.exited).to.equal(0);
    expect(await ns.get(`nodes/agents/${agentId}`).string()).to.equal(null);
    expect(await ns.get(`nodes/agents/${agentId}/ip`).string()).to.equal(null);
    expect(await ns.get(`nodes/agents/${agentId}/config/heartbeat_interval`).string()).to.equal('2');
    for (const line of agent.stderr().trim().split('\n')) expect(() => JSON.parse(line), line).not.to.throw();
  });

  it('exits with one clear line when the RPC port is taken', async () => {
    const { port } = await startAgent();
    const agent = spawnAgent([
      '--etcd-addr',
      ETCD_ADDR,
      '--namespace',
      uniqueName('test'),
      '--agent-port',
      String(port),
      '--bind-host',
      '127.0.0.1',
      '--scratch-root',
      await tempScratch(),
    ]);
    expect(await agent.exited).to.equal(1);
    const last = agent.stderr().trim().split('\n').pop()!;
    expect(last).to.match(/^agent: error: cannot listen on 127\.0\.0\.1:\d+ .*--agent-port$/);
  });

  it('exits at once with code 2 and one line for bad flags', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--agent-port', '70000'], /--agent-port 70000 is out of range/],
      [['--etcd-addr', 'nonsense'], /--etcd-addr "nonsense" is not HOST:PORT/],
      [['--scratch-root', '/nonexistent/scratch'], /--scratch-root \/nonexistent\/scratch does not exist/],
      [['--log-format', 'xml'], /log-format/],
    ];
    for (const [args, re] of cases) {
      const agent = spawnAgent(args);
      expect(await agent.exited, args.join(' ')).to.equal(2);
      const lines = agent.stderr().trim().split('\n');
      expect(lines, agent.stderr()).to.have.length(1);
      expect(lines[0]).to.match(re);
    }
  });

  it("reads BACKEND_* for the agent and check only: an env file's variables do not break methods or keygen", async () => {
    const env = { BACKEND_SCRATCH_ROOT: '/nonexistent/scratch', BACKEND_METRICS: '' };
    const methodsRun = spawnAgent(['methods'], env);
    expect(await methodsRun.exited, methodsRun.stderr()).to.equal(0);
    const bad = spawnAgent([], env);
    expect(await bad.exited).to.equal(2);
    expect(bad.stderr()).to.match(/--scratch-root \/nonexistent\/scratch does not exist/);
  });

  it('serves RPC without any manager in etcd', async () => {
    const { client, etcd } = await startAgent();
    expect(await etcd.get('nodes/manager').string()).to.equal(null);
    await eventually('ping', async () => (await client.call(methods.ping, 'x')) === 'x');
  });
});
