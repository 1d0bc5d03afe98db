/**
 * The cluster information of create_kernels (src/kernels/modern-cluster.ts):
 * what is read of it, what is refused, and the cluster variables each
 * kernel of a session gets (the manager's own win).
 */
import { expect } from 'chai';
import { ParametersError } from '../../src/errors.js';
import { clusterHostnameOf, readClusterInfo, withClusterEnviron } from '../../src/kernels/modern-cluster.js';
import { sessionBridgeName } from '../../src/containers/session-network.js';

const member = (role: string, idx: number, environ: unknown = {}) => ({
  cluster_role: role,
  cluster_idx: idx,
  cluster_hostname: `${role}${idx}`,
  environ,
});

describe('cluster info of create_kernels', () => {
  it('reads the network of 24.09 and of later releases, and refuses multi-node sessions and host networking', () => {
    expect(
      readClusterInfo({ mode: 'single-node', network_name: 'bai-singlenode-s1', size: 3, replicas: { main: 1, sub: 2 } }),
    ).to.deep.equal({
      mode: 'single-node',
      network: 'bai-singlenode-s1',
      size: 3,
      replicas: { main: 1, sub: 2 },
    });
    expect(readClusterInfo({ network_config: { mode: 'bridge', network_name: 'n2' } }).network).to.equal('n2');
    expect(readClusterInfo({ network_name: null }).network).to.equal(null);
    expect(() => readClusterInfo({ mode: 'multi-node', network_name: 'ov' })).to.throw(
      ParametersError,
      /single-node sessions only.*fleet\.rst/,
    );
    expect(() => readClusterInfo({ network_name: 'host' })).to.throw(ParametersError, /host/);
    expect(() => readClusterInfo({ network_config: { mode: 'overlay', network_name: 'ov' } })).to.throw(ParametersError, /overlay/);
    expect(() => readClusterInfo({ network_name: 7 })).to.throw(ParametersError, /str or nil/);
  });

  it('takes one DNS label as a cluster hostname, and nothing that could name something else', () => {
    expect(clusterHostnameOf(member('sub', 2), 1)).to.equal('sub2');
    expect(clusterHostnameOf({}, 0)).to.equal('main1');
    for (const bad of ['a.b', '-x', 'x y', '', 'a'.repeat(64), 'sub1\n127.0.0.1 main1'])
      expect(() => clusterHostnameOf({ cluster_hostname: bad }, 0), JSON.stringify(bad)).to.throw(ParametersError);
  });

  it("gives each kernel the session's and its own cluster variables, the manager's values first", () => {
    const configs = withClusterEnviron(
      [member('main', 1, { GREETING: 'hi' }), member('sub', 1), member('sub', 2, { BACKENDAI_CLUSTER_SIZE: '9' })],
      readClusterInfo({ network_name: 'n' }),
    );
    const envs = configs.map((c) => c.environ as Record<string, string>);
    expect(envs[0]).to.include({
      GREETING: 'hi',
      BACKENDAI_CLUSTER_MODE: 'single-node',
      BACKENDAI_CLUSTER_SIZE: '3',
      BACKENDAI_CLUSTER_REPLICAS: 'main:1,sub:2',
      BACKENDAI_CLUSTER_HOSTS: 'main1,sub1,sub2',
      BACKENDAI_CLUSTER_ROLE: 'main',
      BACKENDAI_CLUSTER_IDX: '1',
      BACKENDAI_CLUSTER_HOST: 'main1',
      BACKENDAI_CLUSTER_LOCAL_RANK: '0',
    });
    expect(envs[1]).to.include({ BACKENDAI_CLUSTER_ROLE: 'sub', BACKENDAI_CLUSTER_IDX: '1', BACKENDAI_CLUSTER_HOST: 'sub1' });
    expect(envs[2]).to.include({ BACKENDAI_CLUSTER_SIZE: '9', BACKENDAI_CLUSTER_HOST: 'sub2', BACKENDAI_CLUSTER_LOCAL_RANK: '2' });
    const bad = { ...member('main', 1), environ: 'not a map' };
    expect(withClusterEnviron([bad], readClusterInfo({}))[0]).to.equal(bad); // left for the config's reading to refuse
  });

  it('names session bridges with the prefix the firewall covers, within the 15 characters of an interface, apart per agent and network', () => {
    const a = sessionBridgeName('i-1', 'bai-singlenode-s1');
    expect(a).to.match(/^cas-[0-9a-f]{11}$/);
    expect(sessionBridgeName('i-2', 'bai-singlenode-s1')).to.not.equal(a);
    expect(sessionBridgeName('i-1', 'bai-singlenode-s2')).to.not.equal(a);
  });
});
