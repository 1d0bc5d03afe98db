/**
 * Node preparation at agent start, against the real etcd, Docker and local
 * registry: the prepull list (pulled before `running` when asked, and after
 * a live change of the list), and the node start-up script (success with its
 * output in the log, failure with abort, timeout, a world-writable script
 * refused), run through the real agent CLI.
 */
import { spawnSync } from 'node:child_process';
import { promises as fs, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import {
  AGENT_BIN,
  ETCD_ADDR,
  eventually,
  freePort,
  onCleanup,
  remoteError,
  requireEtcd,
  spawnAgent,
  startAgent,
  tempScratch,
  testEtcd,
  uniqueName,
} from '../helpers/env.js';
import { sink } from '../helpers/sink.js';
import { putPool, poolSettled } from '../helpers/pool.js';
import { methods } from '../../src/rpc/methods.js';
import { hasImage, pushTestImage, requireRegistry } from '../helpers/registry.js';

describe('node preparation: prepull', function () {
  this.timeout(120_000);
  before(async () => {
    await requireEtcd();
    await requireRegistry();
  });

  it('pulls a listed image that is missing before the agent is running (prepull_before_running)', async () => {
    const img = await pushTestImage();
    const s = await sink();
    const a = await startAgent({}, async (ns) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
      await ns.put('config/agent/image_prefix').value(img.prefix);
      await ns.put('config/agent/prepull').value(img.lang);
      await ns.put('config/agent/prepull_before_running').value('true');
    });
    expect(a.agent.currentState).to.equal('running');
    expect(await hasImage(img.image)).to.equal(true);
    expect(await a.etcd.get(`nodes/agents/${a.agentId}`).string()).to.equal('running');
    await s.next('image_pull_finished');
  });

  it('pulls what a live change of the list adds, the node value winning over the cluster one', async () => {
    const img = await pushTestImage();
    const a = await startAgent({}, async (ns) => {
      await ns.put('config/agent/image_prefix').value(img.prefix);
    });
    expect(await hasImage(img.image)).to.equal(false);
    await a.etcd.put('config/agent/prepull').value('python:not-this-one');
    await a.etcd.put(`nodes/agents/${a.agentId}/config/prepull`).value(img.lang);
    await eventually('the prepulled image', () => hasImage(img.image), 60_000, 200);
  });

  it('pulls a pooled image before the pool fills with it, and list_images counts the pooled containers; delete_image needs force', async () => {
    const img = await pushTestImage();
    const s = await sink();
    const a = await startAgent({}, async (ns) => {
      await ns.put('nodes/manager/event_addr').value(s.addr);
      await ns.put('config/agent/image_prefix').value(img.prefix);
      await putPool(ns, { [img.lang]: { small: 1 } });
    });
    await poolSettled(a.agent, 1);
    await s.next('image_pull_finished');
    expect(a.agent.imageService!.puller.started).to.equal(1);
    const row = (await a.client.call(methods.list_images)).find((r) => r.image === img.image)!;
    expect(row).to.include({ pooled: 1, kernels: 0 });
    const refused = await remoteError(a.client.call(methods.delete_image, img.lang));
    expect(refused.remoteType).to.equal('agent.ImageInUse');
    expect(refused.remoteMessage).to.include('1 idle pooled container').and.include('force');
    const pooled = [...a.agent.warmPool!.idle.keys()];
    expect(await a.client.call(methods.delete_image, img.lang, true)).to.deep.equal({ image: img.image, removed: true });
    expect(a.agent.warmPool!.idle.has(pooled[0]!)).to.equal(false); // its pooled container went first
  });
});

describe('node preparation: start-up script', function () {
  this.timeout(60_000);
  before(requireEtcd);

  /** A script in a root-owned temp dir, and the CLI args of an agent that runs it. */
  async function setup(body: string, settings: Record<string, string>, mode = 0o755) {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'startup-'));
    onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
    const script = path.join(dir, 'startup.sh');
    await fs.writeFile(script, `#!/bin/sh\n${body}\n`);
    await fs.chmod(script, mode);
    const namespace = uniqueName('test');
    const agentId = uniqueName('i-test');
    const { ns } = testEtcd(namespace);
    await ns.put('config/agent/node_startup_script').value(script);
    for (const [k, v] of Object.entries(settings)) await ns.put(`config/agent/${k}`).value(v);
    const args = [
      '--etcd-addr',
      ETCD_ADDR,
      '--namespace',
      namespace,
      '--agent-id',
      agentId,
      '--agent-port',
      String(await freePort()),
      '--bind-host',
      '127.0.0.1',
      '--agent-host-override',
      '127.0.0.1',
      '--scratch-root',
      await tempScratch(),
      '--log-format',
      'json',
    ];
    return { dir, script, ns, agentId, agent: spawnAgent(args) };
  }

  it('runs the script before running, with its output in the log line by line and its exit code', async () => {
    const t = await setup('echo "first line"\necho "to stderr" >&2\ntouch "$(dirname "$0")/ran"', {});
    await t.agent.waitFor(/"message":"agent running"/, 30_000);
    const log = t.agent.stderr();
    expect(log).to.match(/"message":"start-up script: first line"/);
    expect(log).to.match(/"message":"start-up script: to stderr"/);
    expect(log.split('\n').find((l) => l.includes('"message":"node start-up script ended"'))).to.include('"exitCode":0');
    expect(log.indexOf('node start-up script ended')).to.be.lessThan(log.indexOf('"agent running"'));
    expect(existsSync(path.join(t.dir, 'ran'))).to.equal(true);
  });

  it('a failing script with abort: exit 1, one clear line, nothing registered', async () => {
    const t = await setup('echo "cannot mount /data" >&2\nexit 3', { node_startup_failure: 'abort' });
    expect(await t.agent.exited).to.equal(1);
    const last = t.agent.stderr().trim().split('\n').at(-1)!;
    expect(last).to.match(
      /^agent: error: node start-up script \S+ failed \(exit code 3\); its output is in the log above; node_startup_failure is abort, so the agent does not start$/,
    );
    expect(t.agent.stderr()).to.include('start-up script: cannot mount /data');
    expect(await t.ns.getAll().prefix('nodes/agents/').keys()).to.deep.equal([]);
  });

  it('a script past node_startup_timeout is killed; with continue the agent starts and says so in one line', async () => {
    const t = await setup('sleep 60', { node_startup_timeout: '1', node_startup_failure: 'continue' });
    await t.agent.waitFor(/"message":"agent running"/, 30_000);
    expect(t.agent.stderr()).to.match(
      /ran past node_startup_timeout \(1 s\) and was killed; node_startup_failure is continue, so the agent starts anyway/,
    );
    expect(await t.ns.get(`nodes/agents/${t.agentId}`).string()).to.equal('running');
  });

  it('refuses a world-writable script without running it', async () => {
    const t = await setup('touch "$(dirname "$0")/ran"', {}, 0o777);
    expect(await t.agent.exited).to.equal(1);
    expect(t.agent.stderr().trim().split('\n').at(-1)).to.match(
      /^agent: error: node_startup_script \S+ is writable by group or others \(mode 0777\): chmod go-w \S+; it was not run; node_startup_failure is abort/,
    );
    expect(existsSync(path.join(t.dir, 'ran'))).to.equal(false);
  });
});

describe('node preparation: agent check', function () {
  this.timeout(60_000);
  before(async () => {
    await requireEtcd();
    await requireRegistry();
  });

  it('reports the prepull list (present, missing, not in the registry) and the start-up script mode', async () => {
    const img = await pushTestImage();
    const namespace = uniqueName('test');
    const { ns } = testEtcd(namespace);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'startup-'));
    onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
    const script = path.join(dir, 'startup.sh');
    await fs.writeFile(script, '#!/bin/sh\n');
    await fs.chmod(script, 0o777);
    await ns.put('config/agent/image_prefix').value(img.prefix);
    await ns.put('config/agent/prepull').value(`${img.lang} python:no-such-tag`);
    await ns.put('config/agent/node_startup_script').value(script);
    const run = spawnSync(
      process.execPath,
      [
        AGENT_BIN,
        'check',
        '--namespace',
        namespace,
        '--agent-id',
        uniqueName('i-test'),
        '--agent-port',
        String(await freePort()),
        '--bind-host',
        '127.0.0.1',
        '--scratch-root',
        await tempScratch(),
        '--etcd-addr',
        ETCD_ADDR,
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(run.status).to.equal(1);
    const lines = run.stdout.split('\n');
    const prepull = lines.find((l) => l.includes('prepull images'))!;
    expect(prepull).to.match(/^\[FAIL\] prepull images/);
    expect(prepull).to.include(`${img.image}: missing (in the registry`);
    expect(prepull).to.include(`${img.prefix}python:no-such-tag: not in the registry`);
    expect(lines.find((l) => l.includes('node start-up script'))).to.match(/^\[FAIL\] .*writable by group or others \(mode 0777\)/);
  });
});
