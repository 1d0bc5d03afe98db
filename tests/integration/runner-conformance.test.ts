/**
 * The relay against runners of other makes (issue 29): every conformance
 * runner of tests/fixtures/runners/section4_runner.py, each a runner that
 * keeps section 4 of the contract and nothing beyond it, with one of the ways
 * real runners behave (docs/running-code.rst, "Runners of other makes").
 * They run in one container of the test image (it has pyzmq and msgpack),
 * each on its own pair of published ports, and the agent's own KernelRelay
 * drives them as it drives a kernel's runner.
 */
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import { KernelRelay } from '../../src/relay/kernel-relay.js';
import type { ExecuteRequest } from '../../src/relay/relay-options.js';
import type { RunResult } from '../../src/rpc/results.js';
import { eventually, REPO_ROOT, TEST_IMAGE_LANG, TEST_IMAGE_PREFIX, uniqueName } from '../helpers/env.js';
import { recordingLogger } from '../helpers/etcd-cluster.js';
import { consoleText } from '../helpers/run.js';

const KINDS = ['plain', 'shell', 'line', 'star', 'logs', 'exc0', 'signal'] as const;
type Kind = (typeof KINDS)[number];
const docker = new Docker();

/** Starts one container running every kind (removed by `remove`, or by the label); resolves with each kind's published repl ports. */
async function startRunners(): Promise<{ remove(): Promise<void>; ports: Record<Kind, { inPort: number; outPort: number }> }> {
  const launch = KINDS.map((k, i) => `python3 -u /opt/section4/section4_runner.py ${k} ${2000 + 2 * i} ${2001 + 2 * i} &`).join(' ');
  const exposed = KINDS.flatMap((_, i) => [`${2000 + 2 * i}/tcp`, `${2001 + 2 * i}/tcp`]);
  const name = uniqueName('section4');
  const c = await docker.createContainer({
    name,
    Image: `${TEST_IMAGE_PREFIX}${TEST_IMAGE_LANG}`,
    Entrypoint: ['/usr/bin/tini', '-g', '--'],
    Cmd: ['/bin/bash', '-c', `mkdir -p /tmp/star && cd /tmp/star && ${launch} wait`],
    User: '1000',
    Labels: { 'io.compute-agent.test': name },
    ExposedPorts: Object.fromEntries(exposed.map((p) => [p, {}])),
    HostConfig: {
      Binds: [`${path.join(REPO_ROOT, 'tests/fixtures/runners')}:/opt/section4:ro`],
      PortBindings: Object.fromEntries(exposed.map((p) => [p, [{ HostIp: '127.0.0.1', HostPort: '' }]])),
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
    },
  });
  const remove = () => c.remove({ force: true }).then(() => undefined);
  try {
    await c.start();
    const published = (await c.inspect()).NetworkSettings.Ports;
    const host = (p: number) => Number(published[`${p}/tcp`]![0]!.HostPort);
    const ports = Object.fromEntries(KINDS.map((k, i) => [k, { inPort: host(2000 + 2 * i), outPort: host(2001 + 2 * i) }]));
    return { remove, ports: ports as Record<Kind, { inPort: number; outPort: number }> };
  } catch (err) {
    await remove();
    throw err;
  }
}

describe('runners of other makes (section 4 only): the relay against each conformance runner', function () {
  this.timeout(60_000);
  let ports: Record<Kind, { inPort: number; outPort: number }>;
  let remove = async () => {};
  const relays = new Map<Kind, { relay: KernelRelay; log: ReturnType<typeof recordingLogger> }>();

  // One container for the whole file (the hooks' cleanups run after each test): removed in `after`.
  before(async () => {
    ({ ports, remove } = await startRunners());
  });
  after(async () => {
    for (const { relay } of relays.values()) relay.close('the test ended');
    await remove();
  });
  // A failure says what the relays logged and what the runners printed (their container's log), to tell a relay's
  // fault from a runner's.
  afterEach(async function () {
    if (this.currentTest?.state !== 'failed') return;
    for (const [kind, { log }] of relays)
      if (log.lines.length) console.log(`      relay to ${kind}:\n        ${log.lines.slice(-30).join('\n        ')}`);
    const [c] = await docker.listContainers({ all: true, filters: { label: ['io.compute-agent.test'], name: ['section4'] } });
    if (c) {
      const logs = await docker.getContainer(c.Id).logs({ stdout: true, stderr: true, tail: 40 });
      console.log(`      the runners' container (${c.State}):\n${logs.toString('latin1')}`);
    }
  });

  /** The relay to one kind (one per kind, kept across its tests, as a kernel's is). */
  function relayOf(kind: Kind) {
    let r = relays.get(kind);
    if (!r) {
      const log = recordingLogger();
      const relay = new KernelRelay({
        host: '127.0.0.1',
        replInPort: ports[kind].inPort,
        replOutPort: ports[kind].outPort,
        log: log.child({ kernelId: `section4-${kind}` }),
        execTimeoutSec: 0,
        onExecTimeout: () => undefined,
        outputFiles: async () => [],
      });
      relays.set(kind, (r = { relay, log }));
    }
    return r;
  }

  /** Starts a run and drives `continue` to its end; every reply, in order. */
  async function drive(relay: KernelRelay, req: Partial<ExecuteRequest>): Promise<RunResult[]> {
    const base = { apiVersion: 2, runId: null, mode: 'query', code: '', opts: {}, flushTimeoutMs: 2000 } as const;
    const replies = [await relay.execute({ ...base, ...req })];
    while (replies.at(-1)!.status !== 'finished') {
      expect(replies.length, JSON.stringify(replies)).to.be.below(100);
      replies.push(await relay.execute({ ...base, runId: replies[0]!.runId, mode: 'continue' }));
    }
    return replies;
  }
  const query = (relay: KernelRelay, code: string) => drive(relay, { code });
  const batch = (relay: KernelRelay, build: string, exec: string) => drive(relay, { mode: 'batch', opts: { build, exec } });
  const exitOf = (rs: RunResult[]) => rs.at(-1)!.exitCode;
  /** The statuses a run went through and their exit codes, `continued` left out. */
  const statuses = (rs: RunResult[]) => rs.filter((r) => r.status !== 'continued').map((r) => [r.status, r.exitCode]);

  for (const kind of KINDS) {
    describe(`the ${kind} runner`, () => {
      it('is ready once it answers status, is driven untagged, and gives three queued runs each its own output and exit code', async () => {
        const { relay } = relayOf(kind);
        await relay.ready(30_000);
        expect(relay.protocol).to.equal('untagged');
        const runs = await Promise.all(['a', 'b', 'c'].map((x, i) => query(relay, `print("run ${x}")\nraise SystemExit(${i})`)));
        expect(runs.map((r) => consoleText(r, 'stdout'))).to.deep.equal(['run a\n', 'run b\n', 'run c\n']);
        expect(runs.map(exitOf)).to.deep.equal([0, 1, 2]);
      });

      it('gets batch build and exec verbatim, empty ones included, each answered once', async () => {
        const { relay } = relayOf(kind);
        const built = await batch(relay, 'echo building', '');
        expect(statuses(built)).to.deep.equal([
          ['build-finished', 0],
          ['finished', 0],
        ]);
        expect(consoleText(built, 'stdout')).to.equal('building\n');
        const failed = await batch(relay, 'exit 3', 'echo never');
        expect(statuses(failed)).to.deep.equal([
          ['build-finished', 3],
          ['finished', 127],
        ]);
        expect(consoleText(failed, 'stdout')).to.equal('');
        // The run after them is its own: nothing left over from those.
        expect(consoleText(await query(relay, 'print("after")'), 'stdout')).to.equal('after\n');
      });

      it('answers completions with the client opts as given plus line and code', async () => {
        const { relay } = relayOf(kind);
        const bare = await relay.complete('pri', {});
        const given = await relay.complete('pri', { row: 0, col: 7, line: 'x = abs', post: '' });
        if (kind === 'line') {
          expect(bare).to.include('print');
          expect(given).to.include('abs').and.not.include('print');
        } else expect([bare, given]).to.deep.equal([[], []]);
      });
    });
  }

  it('shell: a query ended by two finished records is one end; the next run keeps its output', async () => {
    const { relay, log } = relayOf('shell');
    const [a, b] = await Promise.all([query(relay, 'print("first")'), query(relay, 'print("second")\nraise SystemExit(4)')]);
    expect([consoleText(a, 'stdout'), exitOf(a), consoleText(b, 'stdout'), exitOf(b)]).to.deep.equal(['first\n', 0, 'second\n', 4]);
    expect(log.count(/end record for no run going/)).to.equal(0);
  });

  it('star: batch `*` is the runner’s own default (here python main.py; exit 127 without main.py)', async () => {
    const { relay } = relayOf('star');
    const none = await batch(relay, '*', '*');
    expect(statuses(none)).to.deep.equal([
      ['build-finished', 0],
      ['finished', 127],
    ]);
    await query(relay, 'open("main.py", "w").write("print(6 * 7)")');
    const main = await batch(relay, '*', '*');
    expect([consoleText(main, 'stdout'), exitOf(main)]).to.deep.equal(['42\n', 0]);
    // A runner with no default of its own answers `*` too (here: 127), rather than the agent skipping it.
    expect(statuses(await batch(relayOf('plain').relay, '*', '*'))).to.deep.equal([
      ['build-finished', 127],
      ['finished', 127],
    ]);
  });

  it('exc0 and signal: the exit code is the runner’s, as it says it (0 after an exception, negative after a signal)', async () => {
    const exc = await query(relayOf('exc0').relay, 'raise ValueError("boom")');
    expect(exitOf(exc)).to.equal(0);
    expect(consoleText(exc, 'stderr')).to.contain('ValueError: boom');
    const killed = await batch(relayOf('signal').relay, '', 'kill -9 $$');
    expect(exitOf(killed)).to.equal(-9);
    expect(exitOf(await batch(relayOf('plain').relay, '', 'kill -9 $$'))).to.equal(137);
  });

  it('logs: log lines written between runs reach no run, and the runs keep their stdout', async () => {
    const { relay } = relayOf('logs');
    const before = relay.dropped;
    await eventually('log lines dropped between runs', () => relay.dropped > before, 10_000);
    const r = await query(relay, 'print("mine")');
    expect([consoleText(r, 'stdout'), exitOf(r)]).to.deep.equal(['mine\n', 0]);
  });

  it('plain: a runner that restarts during a run (a new started_at) loses it; the run ends and the next one is sent', async function () {
    this.timeout(40_000);
    const { relay, log } = relayOf('plain');
    const [lost, next] = await Promise.all([query(relay, 'print("going")\nrestart()'), query(relay, 'print("next")')]);
    expect(exitOf(lost)).to.equal(-1);
    expect(consoleText(lost, 'stderr')).to.match(/runner lost the run: it restarted/);
    expect([consoleText(next, 'stdout'), exitOf(next)]).to.deep.equal(['next\n', 0]);
    expect(log.count(/the kernel runner lost the run it was running/)).to.equal(1);
  });
});
