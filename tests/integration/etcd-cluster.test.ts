/**
 * The agent's etcd layer against a real three-member etcd cluster of the
 * test's own on loopback (never the shared etcd): the endpoint list with
 * failover, the lease that holds the registration (a clean stop deletes the
 * keys at once, a dead node's keys expire, a lost lease is re-granted and
 * logged once), and watches that survive a compaction by a full re-read.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { EtcdStore } from '../../src/adapters/etcd.js';
import { parseEndpoints } from '../../src/config/options.js';
import { Registration } from '../../src/services/registration.js';
import { agentKey } from '../../src/config/etcd-keys.js';
import { AGENT_BIN, eventually, freePort, onCleanup, tempScratch, uniqueName } from '../helpers/env.js';
import { etcdCluster, recordingLogger, type EtcdCluster } from '../helpers/etcd-cluster.js';

describe('etcd cluster: leases, failover, compaction', function () {
  this.timeout(120_000);
  let cluster: EtcdCluster;
  // a cluster per test (removed after it, like everything a test makes)
  beforeEach(async () => {
    cluster = await etcdCluster(3);
  });

  const store = (namespace: string, log = recordingLogger()) => {
    const s = new EtcdStore(parseEndpoints(cluster.addr, '--etcd-addr'), namespace, log);
    onCleanup(() => s.close());
    return s;
  };

  it("holds the registration with a lease: the keys carry it, a clean stop deletes them at once, a dead node's expire by themselves", async () => {
    const namespace = uniqueName('lease');
    const ns = cluster.client().namespace(`/sorna/${namespace}/`);
    const a = new Registration(store(namespace), 'i-a', recordingLogger());
    await a.starting('198.18.0.10', 'tcp://198.18.0.10:6001', 2);
    await a.running(60_000);
    await a.record('heartbeat', '{"time":1}');
    const leaseHex = (await a.leaseId())!;
    for (const k of [agentKey('i-a'), `${agentKey('i-a')}/ip`, `${agentKey('i-a')}/addr`, `${agentKey('i-a')}/heartbeat`]) {
      const kv = (await ns.get(k).exec()).kvs[0];
      expect(kv, k).to.not.equal(undefined);
      expect(BigInt(kv!.lease).toString(16), `${k} is held by the lease`).to.equal(leaseHex);
    }
    await ns.put(`${agentKey('i-a')}/config/heartbeat_interval`).value('2');
    await a.stopChecking();
    await a.deregister();
    // at once, not after the TTL
    expect(await ns.get(agentKey('i-a')).string()).to.equal(null);
    expect(
      Object.keys(
        await ns
          .getAll()
          .prefix(`${agentKey('i-a')}/`)
          .strings(),
      ),
    ).to.deep.equal([`${agentKey('i-a')}/config/heartbeat_interval`]);

    // a node that dies: its client goes without a word, the lease is no longer kept alive
    const deadStore = new EtcdStore(parseEndpoints(cluster.addr, '--etcd-addr'), namespace, recordingLogger());
    const b = new Registration(deadStore, 'i-b', recordingLogger());
    await b.starting('198.18.0.11', 'tcp://198.18.0.11:6001', 2);
    await b.running(60_000);
    expect(await ns.get(agentKey('i-b')).string()).to.equal('running');
    await b.stopChecking();
    deadStore.close();
    await eventually("the dead node's registration to expire", async () => (await ns.get(agentKey('i-b')).string()) === null, 15_000, 200);
    expect(await ns.get(`${agentKey('i-b')}/ip`).string()).to.equal(null);
  });

  it('re-grants a lost lease and writes the keys again, logging the loss once and the repair once', async () => {
    const namespace = uniqueName('regrant');
    const raw = cluster.client();
    const ns = raw.namespace(`/sorna/${namespace}/`);
    const log = recordingLogger();
    const reg = new Registration(store(namespace), 'i-r', log);
    onCleanup(() => reg.stopChecking());
    await reg.starting('198.18.0.12', 'tcp://198.18.0.12:6001', 2);
    await reg.running(60_000);
    const first = (await reg.leaseId())!;
    // someone (an operator, or etcd after an outage) revokes the lease: the keys go with it
    await raw.leaseClient.leaseRevoke({ ID: BigInt(`0x${first}`).toString() });
    await eventually(
      'the registration to be written again',
      async () => reg.regrants === 1 && (await ns.get(agentKey('i-r')).string()) === 'running',
      20_000,
      100,
    );
    const second = (await reg.leaseId())!;
    expect(second).to.not.equal(first);
    const kv = (await ns.get(`${agentKey('i-r')}/ip`).exec()).kvs[0]!;
    expect(BigInt(kv.lease).toString(16)).to.equal(second);
    expect(log.count(/lease of the registration was lost/), 'loss logged once').to.equal(1);
    expect(log.count(/registration re-granted/), 'repair logged once').to.equal(1);
    await reg.stopChecking();
    await reg.deregister();
  });

  it('fails over to another member when the one it uses is killed, and a watch resumes there without missing or replaying a change', async () => {
    const namespace = uniqueName('failover');
    const raw = cluster.client();
    const ns = raw.namespace(`/sorna/${namespace}/`);
    const s = store(namespace);
    const seen: Array<[string, string | null]> = [];
    const unwatch = await s.watchPrefix('config/', (k, v) => seen.push([k, v]));
    onCleanup(unwatch);
    await ns.put('config/a').value('1');
    await eventually('the first change', () => seen.length === 1);
    // kill the leader: the client's connection to it (if that is the one) breaks, and an election follows
    const leader = await cluster.leader();
    await cluster.kill(leader);
    await eventually(
      'a write during or after the election',
      async () => {
        await ns.put('config/a').value('2');
        return true;
      },
      30_000,
      200,
    );
    await eventually('a read through the store after the leader died', async () => (await s.get('config/a')) === '2', 30_000, 200);
    await eventually('the change made across the election', () => seen.some(([, v]) => v === '2'), 30_000, 100);
    await ns.put('config/b').value('3');
    await eventually('a change after the election', () => seen.some(([k]) => k === 'config/b'), 30_000, 100);
    expect(
      seen.map(([, v]) => v),
      'each change exactly once, in order',
    ).to.deep.equal(['1', '2', '3']);
    await cluster.start(leader);
  });

  it('a watch whose history was compacted away is created anew and re-reads, so no change is lost', async () => {
    const namespace = uniqueName('compact');
    const raw = cluster.client();
    const ns = raw.namespace(`/sorna/${namespace}/`);
    await ns.put('config/k').value('1');
    const from = (await raw.maintenance.status()).header.revision;
    await ns.put('config/k').value('2');
    const now = (await ns.put('config/k').value('3').exec()).header.revision;
    await raw.kv.compact({ revision: now, physical: true });
    const log = recordingLogger();
    const s = store(namespace, log);
    const seen: string[] = [];
    let resyncs = 0;
    const unwatch = await s.watchPrefix('config/', (_k, v) => seen.push(String(v)), {
      fromRevision: from,
      onResync: () => {
        resyncs++;
      },
    });
    onCleanup(unwatch);
    await eventually('a re-read after the compacted watch', () => resyncs === 1, 20_000, 50);
    expect(log.count(/cancelled a watch/)).to.equal(1);
    await ns.put('config/k').value('4');
    await eventually('a change after the watch was created anew', () => seen.includes('4'), 20_000, 50);
  });

  it('agent check checks each member and the cluster: a lost member is a warning, a lost quorum a failure', async () => {
    const check = async () => {
      const args = [
        AGENT_BIN,
        'check',
        '--etcd-addr',
        cluster.addr,
        '--namespace',
        uniqueName('check'),
        '--agent-id',
        uniqueName('i-check'),
        '--agent-port',
        String(await freePort()),
        '--bind-host',
        '127.0.0.1',
        '--scratch-root',
        await tempScratch(),
      ];
      const r = await promisify(execFile)(process.execPath, args).catch((e: { stdout: string }) => e);
      const lines = r.stdout.split('\n');
      const i = lines.findIndex((l) => l.slice(7).startsWith('etcd cluster health'));
      return { line: lines[i] ?? r.stdout, next: lines[i + 1] ?? '' };
    };
    expect((await check()).line).to.match(
      /^\[ ok \] etcd cluster health +3\/3 endpoint\(s\) answer \(etcd 3\.\d+\.\d+\); leader [0-9a-f]+ at 127\.0\.0\.1:\d+, raft term \d+$/,
    );
    await cluster.kill(1);
    await cluster.leader(); // the two left have a leader (under load, a check during the election saw no quorum)
    const one = await check();
    expect(one.line).to.match(/^\[warn\] etcd cluster health +2\/3 endpoint\(s\) answer/);
    expect(one.next).to.include(`127.0.0.1:${cluster.members[1]!.client} does not answer`);
    await cluster.kill(2);
    expect((await check()).line).to.match(/^\[FAIL\] etcd cluster health +only 1 of 3 etcd endpoints answer: no quorum/);
  });
});
