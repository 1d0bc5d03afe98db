/**
 * Draining a node (docs/agentctl.rst, "Draining a node") against the real
 * Docker engine, etcd and kernel image: a draining agent refuses new kernels
 * with the retryable agent.NodeDraining, empties its warm pool, keeps its
 * kernels running (and restartable), says `draining` in heartbeats, its
 * registration and `agentctl agents`, and keeps the drain across a restart
 * until undrain; a deadline destroys what is left with reason node-drain;
 * the node's etcd key drains it without RPC; SIGTERM with sigterm_action
 * drain drains before the stop.
 */
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { modernMethods } from '../../src/rpc/modern-methods.js';
import { CallosumClient } from '../../src/rpc/callosum-client.js';
import { WireErrors } from '../../src/errors.js';
import type { DrainStatus } from '../../src/rpc/results.js';
import {
  containersOf,
  eventually,
  onCleanup,
  remoteError,
  requireEtcd,
  restartAgent,
  startAgent,
  uniqueName,
  type TestAgent,
} from '../helpers/env.js';
import { agentctl } from '../helpers/ctl.js';
import { poolSettled, putPool } from '../helpers/pool.js';
import { sink } from '../helpers/sink.js';
import { childAgent, runCode, SMALL_KERNEL } from '../soak/drive.js';

const create = (t: { client: TestAgent['client'] }, id: string) =>
  t.client.callWithTimeout(120_000, methods.create_kernel, id, SMALL_KERNEL);
/** Whether the agent says it drains in its registration. */
const isDraining = async (t: TestAgent) => (await t.etcd.get(`nodes/agents/${t.agentId}/draining`).string()) !== null;
const pooled = async (agentId: string) => (await containersOf(agentId)).filter((c) => c.Labels['io.compute-agent.pool'] !== undefined);

describe('drain', function () {
  this.timeout(240_000);
  before(requireEtcd);

  it('refuses creates (retryable NodeDraining), empties the pool, keeps and restarts a running kernel, says draining everywhere, survives a restart; undrain takes kernels again', async () => {
    const s = await sink();
    const t = await startAgent({}, async (ns) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
      await ns.put('config/agent/heartbeat_interval').value('0.5');
    });
    const k1 = uniqueName('k');
    await create(t, k1);
    await putPool(t.etcd, { [SMALL_KERNEL.lang]: { small: 1 } });
    await poolSettled(t.agent, 1);

    const status: DrainStatus = await t.client.call(methods.drain, null);
    expect(status).to.include({ draining: true, deadline: null, kernels: 1 });
    const refused = await remoteError(create(t, uniqueName('k')));
    expect(refused.remoteType).to.equal(WireErrors.NodeDraining);
    expect(refused.retryable).to.equal(true);
    expect(refused.remoteMessage).to.match(/is draining .*another node.*agentctl undrain/);

    await eventually(
      'the warm pool to empty',
      async () => t.agent.warmPool!.idle.size === 0 && (await pooled(t.agentId)).length === 0,
      30_000,
      200,
    );
    expect(await runCode(t.client, k1, 'print(6*7)')).to.equal('42\n');
    await t.client.callWithTimeout(120_000, methods.restart_kernel, k1, SMALL_KERNEL); // not a new kernel: a drain lets it restart
    expect(await runCode(t.client, k1, 'print("after restart")')).to.equal('after restart\n');

    const beatAt = Date.now();
    const beat = await s.next('instance_heartbeat', beatAt, 10_000);
    expect((beat.args[0] as Record<string, unknown>).draining).to.equal(true);
    await t.agent.afterHeartbeats(2);
    const record = JSON.parse((await t.etcd.get(`nodes/agents/${t.agentId}/heartbeat`).string())!) as Record<string, unknown>;
    expect(record.draining).to.equal(true);
    const reg = JSON.parse((await t.etcd.get(`nodes/agents/${t.agentId}/draining`).string())!) as Record<string, unknown>;
    expect(reg).to.have.property('since').that.is.a('number');
    const table = await agentctl(['--namespace', t.namespace, 'agents']);
    expect(table.stdout).to.match(new RegExp(`${t.agentId}\\s+draining\\s`));
    const json = JSON.parse((await agentctl(['--namespace', t.namespace, 'agents', '--json'])).stdout) as Array<Record<string, unknown>>;
    expect(json.find((a) => a.id === t.agentId)?.draining).to.have.property('since');

    // The drain is in etcd: a restarted agent drains from its start (no pool fill, creates refused).
    const again = await restartAgent(t);
    expect(again.agent.warmPool!.idle.size + again.agent.warmPool!.creating.size).to.equal(0);
    expect((await remoteError(create(again, uniqueName('k')))).remoteType).to.equal(WireErrors.NodeDraining);
    expect(await runCode(again.client, k1, 'print("still here")')).to.equal('still here\n');

    const undrained = await agentctl(['--agent', `tcp://127.0.0.1:${again.agent.options.agentPort}`, 'undrain']);
    expect(undrained.code, undrained.stderr).to.equal(0);
    expect(undrained.stdout).to.match(/^not draining: new kernels are taken \(1 running\)/);
    expect(await t.etcd.get(`nodes/agents/${t.agentId}/drain`).string()).to.equal(null);
    expect(await t.etcd.get(`nodes/agents/${t.agentId}/draining`).string()).to.equal(null);
    await create(again, uniqueName('k'));
    const pool = again.agent.warmPool!;
    await eventually('the pool to refill', () => pool.idle.size + pool.creating.size > 0, 30_000, 100); // started: its end is the pool tests'
  });

  it('drains from the etcd key (a bare number of seconds, written back with its times) and destroys what is left at the deadline with node-drain; a modern manager undrains', async () => {
    const s = await sink();
    const t = await startAgent({}, (ns) =>
      ns
        .put('nodes/manager/event_addr')
        .value(s.addr)
        .then(() => undefined),
    );
    const k1 = uniqueName('k');
    await create(t, k1);
    const asked = Date.now();
    await t.etcd.put(`nodes/agents/${t.agentId}/drain`).value('1');
    const ended = await s.next('kernel_terminated', asked, 30_000);
    expect(ended.args.slice(0, 2)).to.deep.equal([k1, 'node-drain']);
    expect(Date.now() - asked, 'not before the 1 s deadline (timers may fire a few ms early against Date.now)').to.be.at.least(990);
    expect((await containersOf(t.agentId)).map((c) => c.Id)).to.deep.equal([]);
    const kept = JSON.parse((await t.etcd.get(`nodes/agents/${t.agentId}/drain`).string())!) as { since: number; deadline: number };
    expect(kept.deadline - kept.since).to.be.closeTo(1, 0.01);
    expect((await remoteError(create(t, uniqueName('k')))).remoteType).to.equal(WireErrors.NodeDraining);

    // The modern table declares the same methods: a 24.09-style manager asks over Callosum.
    const modern = new CallosumClient(`tcp://127.0.0.1:${t.port}`, { timeoutMs: 10_000 });
    onCleanup(() => modern.close());
    expect(await modern.call(modernMethods.undrain)).to.include({ draining: false, kernels: 0 });
    await eventually(
      'the registration to stop saying draining',
      async () => (await t.etcd.get(`nodes/agents/${t.agentId}/draining`).string()) === null,
    );
    expect(await t.etcd.get(`nodes/agents/${t.agentId}/drain`).string()).to.equal(null);

    // agentctl --etcd: the key only, for a node agentctl cannot reach.
    const etcdArgs = ['--namespace', t.namespace, '--agent-id', t.agentId, '--etcd'];
    const viaEtcd = await agentctl(['drain', ...etcdArgs, '--deadline', '600']);
    expect(viaEtcd.code, viaEtcd.stderr).to.equal(0);
    await eventually('the agent to drain from the key', () => isDraining(t));
    const key = JSON.parse((await t.etcd.get(`nodes/agents/${t.agentId}/drain`).string())!) as { since: number; deadline: number };
    expect(key.deadline - key.since).to.be.closeTo(600, 0.01);
    expect((await agentctl(['undrain', ...etcdArgs])).code).to.equal(0);
    await eventually('the agent to undrain from the key', async () => !(await isDraining(t)));
  });

  it('with sigterm_action drain, SIGTERM drains first: kernels left at sigterm_drain_deadline go with node-drain, then the process exits 0 and no drain key is left', async () => {
    const s = await sink();
    const a = await childAgent({ settings: { sigterm_action: 'drain', sigterm_drain_deadline: '2' } });
    await a.etcd.put('nodes/manager/event_addr').value(s.addr);
    await s.next('instance_started', 0, 15_000);
    const k1 = uniqueName('k');
    await a.client.callWithTimeout(120_000, methods.create_kernel, k1, SMALL_KERNEL);
    const signalled = Date.now();
    a.proc.child.kill('SIGTERM');
    await a.proc.waitFor(/"message":"stopping on signal; draining first/, 10_000);
    const ended = await s.next('kernel_terminated', signalled, 30_000);
    expect(ended.args.slice(0, 2)).to.deep.equal([k1, 'node-drain']);
    expect(await a.proc.exited).to.equal(0);
    const terminated = s.events.find((e) => e.name === 'instance_terminated' && e.at >= signalled);
    expect(terminated, 'instance_terminated after the kernel').to.not.equal(undefined);
    expect(terminated!.at).to.be.at.least(ended.at);
    expect((await containersOf(a.agentId)).length).to.equal(0);
    expect(await a.etcd.get(`nodes/agents/${a.agentId}/drain`).string()).to.equal(null);
  });
});
