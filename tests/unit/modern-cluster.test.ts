/**
 * The cluster information of create_kernels (src/kernels/modern-cluster.ts):
 * what is read of it (the session's SSH key pair too, src/kernels/cluster-ssh.ts),
 * what is refused, and the cluster variables each kernel of a session gets
 * (the manager's own win).
 */
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { expect } from 'chai';
import { ParametersError } from '../../src/errors.js';
import { clusterHostnameOf, readClusterInfo, withClusterEnviron } from '../../src/kernels/modern-cluster.js';
import { sessionBridgeName } from '../../src/containers/session-network.js';
import { newSshKeypair, readSshKeypair } from '../../src/kernels/cluster-ssh.js';

const member = (role: string, idx: number, environ: unknown = {}) => ({
  cluster_role: role,
  cluster_idx: idx,
  cluster_hostname: `${role}${idx}`,
  environ,
});

describe('cluster info of create_kernels', () => {
  it('reads the network of 24.09 and of later releases, single-node and multi-node, and refuses host networking', () => {
    expect(
      readClusterInfo({ mode: 'single-node', network_name: 'bai-singlenode-s1', size: 3, replicas: { main: 1, sub: 2 } }),
    ).to.deep.equal({
      mode: 'single-node',
      network: 'bai-singlenode-s1',
      overlay: false,
      size: 3,
      replicas: { main: 1, sub: 2 },
      ssh: null,
    });
    expect(readClusterInfo({ network_config: { mode: 'bridge', network_name: 'n2' } })).to.include({ network: 'n2', overlay: false });
    expect(readClusterInfo({ network_name: null }).network).to.equal(null);
    // multi-node: 24.09 names the overlay in network_name; later releases say overlay in network_config
    expect(readClusterInfo({ mode: 'multi-node', network_name: 'bai-multinode-s1' })).to.include({
      mode: 'multi-node',
      network: 'bai-multinode-s1',
      overlay: true,
    });
    expect(readClusterInfo({ mode: 'multi-node', network_config: { mode: 'overlay', network_name: 'ov', network_id: 'x1' } })).to.include({
      network: 'ov',
      overlay: true,
    });
    expect(() => readClusterInfo({ mode: 'multi-node', network_name: null })).to.throw(ParametersError, /needs network_name.*overlay/);
    expect(() => readClusterInfo({ mode: 'multi-node', network_config: { mode: 'bridge', network_name: 'b' } })).to.throw(
      ParametersError,
      /multi-node session needs an overlay/,
    );
    expect(() => readClusterInfo({ mode: 'cross-cloud' })).to.throw(ParametersError, /mode "cross-cloud" is not supported/);
    expect(() => readClusterInfo({ network_name: 'host' })).to.throw(ParametersError, /host/);
    expect(() => readClusterInfo({ network_config: { mode: 'macvlan', network_name: 'ov' } })).to.throw(ParametersError, /macvlan/);
    expect(() => readClusterInfo({ network_name: 7 })).to.throw(ParametersError, /str or nil/);
  });

  it("reads the session's key pair, as 24.09 makes it or as the agent does, and refuses one that is not one key", () => {
    const made = newSshKeypair();
    expect(made.publicKey).to.match(/^ecdsa-sha2-nistp256 [A-Za-z0-9+/]+=* compute-agent-session$/);
    expect(made.privateKey).to.match(/^-----BEGIN EC PRIVATE KEY-----\n[\s\S]+\n-----END EC PRIVATE KEY-----\n$/);
    // the public line's key is the private key's: the point in the blob is the one the private key derives
    const blob = Buffer.from(made.publicKey.split(' ')[1]!, 'base64');
    const point = blob.subarray(blob.length - 65);
    const jwk = createPublicKey(made.privateKey).export({ format: 'jwk' });
    expect(point.subarray(1, 33).toString('base64url')).to.equal(jwk.x);
    expect(point.subarray(33).toString('base64url')).to.equal(jwk.y);
    const read = readClusterInfo({ network_name: 'n', ssh_keypair: { public_key: made.publicKey, private_key: made.privateKey } });
    expect(read.ssh).to.deep.equal(made);
    // 24.09's form: an RSA key in PKCS#1 PEM, CRLF line ends and no final newline taken as well
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs1', format: 'pem' }) as string;
    const pub = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7 user@host';
    expect(readSshKeypair({ public_key: pub, private_key: rsa.trim().replace(/\n/g, '\r\n') })).to.deep.equal({
      publicKey: pub,
      privateKey: rsa,
    });
    expect(readSshKeypair(null)).to.equal(null);
    expect(readSshKeypair({ public_key: '', private_key: '' }), 'no pair').to.equal(null);
    // read only for a session network: a single kernel's call may carry anything there
    expect(readClusterInfo({ network_name: null, ssh_keypair: 'not a pair' }).ssh).to.equal(null);
    for (const bad of [
      { public_key: `${pub}\n${pub}`, private_key: rsa },
      { public_key: `no-pty ${pub}`, private_key: rsa },
      { public_key: 'ssh-dss AAAAB3NzaC1kc3M=', private_key: rsa },
      { public_key: pub, private_key: rsa.replace('RSA PRIVATE', 'ENCRYPTED PRIVATE') },
      { public_key: pub, private_key: `${rsa}${rsa}` },
      { public_key: pub, private_key: 'x'.repeat(17_000) },
      { public_key: pub },
      [pub, rsa],
    ])
      expect(() => readSshKeypair(bad), JSON.stringify(bad).slice(0, 80)).to.throw(ParametersError, /cluster_info ssh_keypair/);
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
