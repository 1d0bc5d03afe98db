/** Settings compilation and option validation: typed values, node over cluster, errors that name the key. */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { checkScratchRoot, parseEndpoints, parseHostPort, validateOptions, type RawOptions } from '../../src/config/options.js';
import { compileSettings, defaultSettings } from '../../src/config/settings.js';
import { ConfigError } from '../../src/errors.js';
import { parseKernelConfig } from '../../src/containers/spec.js';

describe('settings', () => {
  it('has defaults for every key', () => {
    expect(compileSettings({}, {})).to.deep.equal({ settings: defaultSettings(), problems: [], unknown: [] });
    expect(defaultSettings().heartbeatIntervalSec).to.equal(3);
  });

  it('lets the node value win over the cluster value', () => {
    const { settings } = compileSettings({ heartbeat_interval: '5', image_prefix: 'acme/k-' }, { heartbeat_interval: '0.5' });
    expect(settings.heartbeatIntervalSec).to.equal(0.5);
    expect(settings.imagePrefix).to.equal('acme/k-');
  });

  it('reports a bad value with its key and keeps the other source', () => {
    const c = compileSettings({ heartbeat_interval: '5' }, { heartbeat_interval: 'soon', event_queue_limit: '2.5' });
    expect(c.settings.heartbeatIntervalSec).to.equal(5);
    expect(c.problems.map((p) => p.source)).to.deep.equal([
      'nodes/agents/<id>/config/heartbeat_interval',
      'nodes/agents/<id>/config/event_queue_limit',
    ]);
    expect(c.problems[0]!.message).to.match(/"soon" is not a number/);
    expect(c.problems[1]!.message).to.match(/not a whole number/);
  });

  it('lists unknown keys so typos show up in the log', () => {
    expect(compileSettings({ heartbeat_intervall: '1' }, {}).unknown).to.deep.equal(['config/agent/heartbeat_intervall']);
  });

  it("reads scratch_type and scratch_size, and a create's limits.scratch_mib", () => {
    expect(defaultSettings()).to.include({ scratchType: 'hostdir', scratchSizeMiB: 1024 });
    const c = compileSettings({ scratch_type: 'hostfile', scratch_size: '64' }, { scratch_type: 'zfs' });
    expect(c.settings).to.include({ scratchType: 'hostfile', scratchSizeMiB: 64 });
    expect(c.problems[0]!.message).to.match(/"zfs" is not one of hostdir, hostfile, memory/);
    const spec = (limits: Record<string, unknown>) => parseKernelConfig({ lang: 'python:3', limits }, 'lablup/kernel-', '/mnt');
    expect(spec({}).scratchMiB).to.equal(null);
    expect(spec({ scratch_mib: 16.5 }).scratchMiB).to.equal(16);
    expect(() => spec({ scratch_mib: 4 })).to.throw(/limits.scratch_mib.*must be a number from 8/);
  });
});

describe('options', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'opts-'));
  });
  afterEach(() => fs.rm(dir, { recursive: true, force: true }));

  const raw = (o: Partial<RawOptions> = {}): RawOptions => ({
    etcdAddr: '127.0.0.1:2379',
    namespace: 'local',
    scratchRoot: dir,
    agentPort: 6001,
    bindHost: '*',
    region: 'local',
    idleTimeout: 600,
    logLevel: 'info',
    logFormat: 'text',
    ...o,
  });

  it('parses host:port, with IPv6 in brackets', () => {
    expect(parseHostPort('etcd.local:2379', '--x')).to.deep.equal({ host: 'etcd.local', port: 2379 });
    expect(parseHostPort('[::1]:2379', '--x')).to.deep.equal({ host: '::1', port: 2379 });
    for (const bad of ['etcd', ':2379', 'a b:1', 'h:0', 'h:70000', 'h:x'])
      expect(() => parseHostPort(bad, '--x'), bad).to.throw(ConfigError);
  });

  it('accepts good values and fills the agent id', async () => {
    const o = await validateOptions(raw());
    expect(o.agentId).to.equal(`i-${os.hostname()}`);
    expect(o.etcdAddr).to.deep.equal([{ host: '127.0.0.1', port: 2379 }]);
  });

  it('rejects bad values with a message that names the flag', async () => {
    const rejects = async (o: Partial<RawOptions>, re: RegExp) => {
      let err: unknown;
      await validateOptions(raw(o)).catch((e: unknown) => (err = e));
      expect(err, JSON.stringify(o)).to.be.instanceOf(ConfigError);
      expect((err as Error).message).to.match(re);
    };
    await rejects({ agentPort: 70000 }, /--agent-port 70000 is out of range/);
    await rejects({ etcdAddr: 'nonsense' }, /--etcd-addr "nonsense" is not HOST:PORT/);
    await rejects({ etcdAddr: '127.0.0.1:2379,,127.0.0.1:2380' }, /--etcd-addr .* has an empty entry/);
    await rejects({ etcdAddr: '127.0.0.1:2379,127.0.0.1:2379' }, /lists 127.0.0.1:2379 twice/);
    await rejects({ etcdAddr: '127.0.0.1:2379,nope' }, /--etcd-addr "nope" is not HOST:PORT/);
    await rejects({ scratchRoot: path.join(dir, 'missing') }, /--scratch-root .* does not exist/);
    await rejects({ namespace: 'a/b' }, /--namespace/);
    await rejects({ idleTimeout: -1 }, /--idle-timeout/);
    await rejects({ agentHostOverride: 'bad host' }, /--agent-host-override/);
  });

  it('refuses a scratch root that is a file', async () => {
    const file = path.join(dir, 'f');
    await fs.writeFile(file, '');
    let err: unknown;
    await checkScratchRoot(file).catch((e: unknown) => (err = e));
    expect((err as Error).message).to.match(/is not a directory/);
  });
});

describe('etcd endpoint list', () => {
  it('takes one endpoint or a comma-separated list of cluster members, IPv6 in brackets', () => {
    expect(parseEndpoints('127.0.0.1:2379', '--etcd-addr')).to.deep.equal([{ host: '127.0.0.1', port: 2379 }]);
    expect(parseEndpoints('198.18.0.1:2379, 198.18.0.2:2379,[::1]:2379', '--etcd-addr')).to.deep.equal([
      { host: '198.18.0.1', port: 2379 },
      { host: '198.18.0.2', port: 2379 },
      { host: '::1', port: 2379 },
    ]);
  });
});
