/** agent check's verdict on an etcd cluster from what each endpoint says. */
import { expect } from 'chai';
import type { MemberStatus } from '../../src/adapters/etcd.js';
import { judgeCluster } from '../../src/services/cluster-health.js';

const member = (i: number, over: Partial<MemberStatus> = {}): MemberStatus => ({
  endpoint: `198.18.0.${i}:2379`,
  ok: true,
  version: '3.4.23',
  clusterId: '100',
  memberId: String(10 + i),
  leader: '11',
  raftTerm: '4',
  ...over,
});

describe('etcd cluster health', () => {
  it('passes when every endpoint answers, in one cluster, with one leader', () => {
    const v = judgeCluster([member(1), member(2), member(3)]);
    expect(v.ok).to.equal(true);
    expect(v.detail).to.equal('3/3 endpoint(s) answer (etcd 3.4.23); leader b at 198.18.0.1:2379, raft term 4');
    expect(v.warnings).to.deep.equal([]);
  });

  it('passes with a warning naming the endpoint that does not answer', () => {
    const v = judgeCluster([member(1), { endpoint: '198.18.0.2:2379', ok: false, error: 'connect ECONNREFUSED' }, member(3)]);
    expect(v.ok).to.equal(true);
    expect(v.detail).to.match(/^2\/3 endpoint\(s\) answer/);
    expect(v.warnings).to.have.length(1);
    expect(v.warnings[0]).to.match(/198\.18\.0\.2:2379 does not answer \(connect ECONNREFUSED\)/);
  });

  it('fails without a leader (quorum lost), with members that disagree, with two clusters, or with no answer', () => {
    expect(judgeCluster([member(1, { leader: '0' }), member(2, { leader: '0' }), { endpoint: 'y:1', ok: false }])).to.include({
      ok: false,
      detail: 'no leader: the cluster has lost its quorum or is electing one',
    });
    expect(judgeCluster([member(1), { endpoint: 'x:1', ok: false }, { endpoint: 'y:1', ok: false }])).to.include({
      ok: false,
      detail: 'only 1 of 3 etcd endpoints answer: no quorum (a cluster of 3 needs 2)',
    });
    expect(judgeCluster([member(1), member(2, { leader: '12' })]).detail).to.match(/disagree on the leader/);
    expect(judgeCluster([member(1), member(2, { clusterId: '200' })]).detail).to.match(/2 different etcd clusters/);
    expect(judgeCluster([{ endpoint: 'x:1', ok: false }])).to.include({ ok: false, detail: 'none of 1 etcd endpoint(s) answers' });
  });
});
