/** Image names as registries read them, the aggregation of Docker's pull progress, the throttle, and agentctl's progress bar. */
import { expect } from 'chai';
import { DOCKER_HUB, parseImageRef } from '../../src/config/lang.js';
import { isLoopbackRegistry } from '../../src/images/registry.js';
import { PullProgress, Throttle } from '../../src/images/progress.js';
import { PullBar } from '../../src/cli/ctl/progress-bar.js';
import { compileSettings } from '../../src/config/settings.js';

describe('image references', () => {
  it('splits registry, repository, tag and digest as Docker does', () => {
    expect(parseImageRef('lablup/kernel-python:3-debian')).to.include({
      registry: DOCKER_HUB,
      repository: 'lablup/kernel-python',
      tag: '3-debian',
      digest: null,
    });
    expect(parseImageRef('python')).to.include({ registry: DOCKER_HUB, repository: 'library/python', tag: 'latest' });
    expect(parseImageRef('127.0.0.1:5000/t/kernel-python:3')).to.include({
      registry: '127.0.0.1:5000',
      repository: 't/kernel-python',
      tag: '3',
    });
    expect(parseImageRef('localhost/x')).to.include({ registry: 'localhost', repository: 'x', tag: 'latest' });
    const d = 'sha256:' + 'a'.repeat(64);
    expect(parseImageRef(`reg.example.com/a/b@${d}`)).to.include({ registry: 'reg.example.com', repository: 'a/b', digest: d });
  });

  it('refuses malformed names with a message that says what is wrong', () => {
    expect(() => parseImageRef('Upper/case:1')).to.throw(/malformed repository/);
    expect(() => parseImageRef('a/b:bad tag')).to.throw(/malformed tag/);
    expect(() => parseImageRef('a/b@sha256:xyz')).to.throw(/malformed digest/);
    expect(() => parseImageRef('')).to.throw(/1 to 512/);
  });

  it('uses plain HTTP only for loopback registries', () => {
    expect(isLoopbackRegistry('127.0.0.1:5000')).to.equal(true);
    expect(isLoopbackRegistry('localhost:5000')).to.equal(true);
    expect(isLoopbackRegistry('[::1]:5000')).to.equal(true);
    expect(isLoopbackRegistry('registry-1.docker.io')).to.equal(false);
    expect(isLoopbackRegistry('127.example.com')).to.equal(false);
  });
});

describe('pull progress', () => {
  it("folds Docker's messages into bytes per layer and in all", () => {
    const p = new PullProgress('img', 3000);
    p.update({ status: 'Pulling from t/kernel-python', id: '3' });
    p.update({ status: 'Pulling fs layer', id: 'aaaaaaaaaaaa', progressDetail: {} });
    p.update({ status: 'Already exists', id: 'bbbbbbbbbbbb', progressDetail: {} });
    p.update({ status: 'Downloading', id: 'aaaaaaaaaaaa', progressDetail: { current: 500, total: 2000 } });
    let s = p.snapshot();
    expect(s.bytesDone).to.equal(500);
    expect(s.bytesTotal).to.equal(3000); // the manifest's figure while Docker has told less
    expect(s.layers.map((l) => [l.id, l.status])).to.deep.equal([
      ['aaaaaaaaaaaa', 'Downloading'],
      ['bbbbbbbbbbbb', 'Already exists'],
    ]);
    p.update({ status: 'Download complete', id: 'aaaaaaaaaaaa' });
    p.update({ status: 'Extracting', id: 'aaaaaaaaaaaa', progressDetail: { current: 100, total: 2000 } });
    s = p.snapshot();
    expect(s.bytesDone).to.equal(2000);
    p.update({ status: 'Digest: sha256:abc' });
    p.update({ error: 'boom', errorDetail: { message: 'manifest unknown' } });
    expect(p.error).to.equal('manifest unknown');
  });

  it('lets at most one update through per interval', () => {
    let now = 0;
    const t = new Throttle(1000, () => now);
    const passed: number[] = [];
    for (now = 0; now <= 3500; now += 100) if (t.ready()) passed.push(now);
    expect(passed).to.deep.equal([0, 1000, 2000, 3000]);
  });
});

describe('agentctl pull bar', () => {
  const pull = (done: number) => ({
    image: 'reg/x:1',
    state: 'pulling' as const,
    bytes_done: done,
    bytes_total: 4 * 1024 * 1024,
    layers: [{ id: 'a'.repeat(64), status: 'Downloading', done, total: 4 * 1024 * 1024 }],
  });

  it('prints plain lines at most once a second when not a TTY, with percent, bytes and rate', () => {
    let now = 0;
    const bar = new PullBar('reg/x:1', { tty: false, now: () => now });
    expect(bar.update(pull(0))).to.equal('pulling reg/x:1: 0% 0B of 4.0MiB, 0B/s\n');
    now = 500;
    expect(bar.update(pull(1024 * 1024))).to.equal('');
    now = 1000;
    expect(bar.update(pull(2 * 1024 * 1024))).to.equal('pulling reg/x:1: 50% 2.0MiB of 4.0MiB, 2.0MiB/s\n');
    expect(bar.finish()).to.equal('');
  });

  it('redraws one bar in place on a terminal, with a line per layer when it is wide', () => {
    let now = 0;
    const narrow = new PullBar('reg/x:1', { tty: true, columns: 80, now: () => now });
    const first = narrow.update(pull(1024 * 1024));
    // eslint-disable-next-line no-control-regex -- the escape sequences of the terminal are what is tested
    expect(first).to.match(/^\x1b\[J.*\[#+\.+\]\s+25% 1\.0MiB\/4\.0MiB/);
    expect(first.split('\n')).to.have.length(2);
    now = 100;
    // eslint-disable-next-line no-control-regex -- the escape sequences of the terminal are what is tested
    expect(narrow.update(pull(2 * 1024 * 1024))).to.match(/^\x1b\[1F\x1b\[J/);
    const wide = new PullBar('reg/x:1', { tty: true, columns: 120, now: () => now });
    const lines = wide.update(pull(1024 * 1024)).split('\n');
    expect(lines).to.have.length(3);
    expect(lines[1]).to.match(/^ {2}a{12} Downloading\s+1\.0MiB\/4\.0MiB$/);
    expect(wide.finish()).to.equal('\x1b[2F\x1b[J');
  });
});

describe('image settings', () => {
  it('reads auto_pull, the pull bounds, the prepull list and the start-up policy, refusing bad values by key', () => {
    const { settings, problems } = compileSettings(
      {
        auto_pull: 'digest',
        pull_concurrency: '3',
        pull_timeout: '60',
        prepull: 'python:3-debian, 127.0.0.1:5000/x/y:1',
        node_startup_failure: 'continue',
      },
      { pull_concurrency: '0', auto_pull: 'sometimes' },
    );
    expect(settings).to.include({ autoPull: 'digest', pullConcurrency: 3, pullTimeoutSec: 60, nodeStartupFailure: 'continue' });
    expect(settings.prepull).to.deep.equal(['python:3-debian', '127.0.0.1:5000/x/y:1']);
    expect(problems.map((p) => p.source).sort()).to.deep.equal([
      'nodes/agents/<id>/config/auto_pull',
      'nodes/agents/<id>/config/pull_concurrency',
    ]);
  });
});
