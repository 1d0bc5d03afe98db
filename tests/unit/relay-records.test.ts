/** The run-integrity pieces of the relay without a kernel: runner records, how a runner ended, and matching answers to requests. */
import { expect } from 'chai';
import { pack } from 'msgpackr';
import { batchInputs, completionRequest, describeRunnerEnd, parseHello, parseRecord, parseStatus } from '../../src/relay/runner-records.js';
import { RequestBook } from '../../src/relay/requests.js';
import { RunBook } from '../../src/relay/run-book.js';
import { Run } from '../../src/relay/runs.js';
import { silentLogger } from '../../src/log.js';

describe('runner records', () => {
  it('reads a two-frame record, a tagged one, and refuses meta it cannot read without failing', () => {
    expect(parseRecord([Buffer.from('stdout'), Buffer.from('x')])).to.deep.equal({ type: 'stdout', payload: Buffer.from('x'), meta: null });
    expect(parseRecord([Buffer.from('stdout'), Buffer.from('x'), Buffer.from('{"g":"G1","t":"e.1"}')])!.meta).to.deep.equal({
      g: 'G1',
      t: 'e.1',
    });
    expect(parseRecord([Buffer.from('stdout'), Buffer.from('x'), Buffer.from('{"g":"G1","late":true}')])!.meta).to.deep.equal({
      g: 'G1',
      late: true,
    });
    expect(parseRecord([Buffer.from('stdout'), Buffer.from('x'), Buffer.from('not json')])!.meta).to.equal(null);
    // The keep extension's numbers: whole and not negative, or not read.
    expect(
      parseRecord([Buffer.from('stderr'), Buffer.from('x'), Buffer.from('{"g":"G1","t":"e.1","s":4,"lost":true}')])!.meta,
    ).to.deep.equal({
      g: 'G1',
      t: 'e.1',
      s: 4,
      lost: true,
    });
    expect(parseRecord([Buffer.from('stdout'), Buffer.from('x'), Buffer.from('{"t":"e.1","s":-1}')])!.meta).to.deep.equal({ t: 'e.1' });
    expect(parseRecord([Buffer.from('stdout'), Buffer.from('x'), Buffer.from('{"t":"e.1","s":1.5}')])!.meta).to.deep.equal({ t: 'e.1' });
    expect(parseRecord([Buffer.from('stdout'), Buffer.from('x'), Buffer.from('{"g":7,"t":[1]}')])!.meta).to.deep.equal({});
    expect(parseRecord([])).to.equal(null);
  });

  it('reads hello, keeping only well-formed job references', () => {
    const h = parseHello(
      Buffer.from(
        JSON.stringify({
          generation: 'abc',
          pid: 12,
          protocol: 1,
          previous: { status: 139 },
          features: ['keep'],
          current: { t: 'e.3', run: 'r3', acked: 7 },
          queue: [{ t: 'e.4', run: 'r4' }, { run: 'no tag' }, 'junk'],
          recent: [{ t: 'e.2', run: 'r2', exitCode: 0, acked: -1 }],
        }),
      ),
    );
    expect(h).to.deep.equal({
      generation: 'abc',
      pid: 12,
      keep: true,
      previousStatus: 139,
      current: { t: 'e.3', run: 'r3', acked: 7 },
      queue: [{ t: 'e.4', run: 'r4', acked: 0 }],
      recent: [{ t: 'e.2', run: 'r2', exitCode: 0, acked: 0 }],
    });
    expect(parseHello(Buffer.from(JSON.stringify({ generation: 'g', features: 'keep' })))!.keep).to.equal(false);
    expect(parseHello(Buffer.from('{"pid": 1}'))).to.equal(null);
    expect(parseHello(Buffer.from('garbage'))).to.equal(null);
    expect(parseHello(Buffer.from(JSON.stringify({ generation: 'g' })))!.previousStatus).to.equal(null);
  });

  it('reads a status map and nothing else', () => {
    expect(parseStatus(pack({ busy: false, queue: 0 }))).to.deep.equal({ busy: false, queue: 0 });
    expect(parseStatus(pack([1, 2]))).to.equal(null);
    expect(parseStatus(Buffer.from([0xc1]))).to.equal(null);
  });

  it('says how a runner ended: exit status, signal, OOM kill, unknown; never exit code 0', () => {
    const noOom = { killed: false, limitMiB: 128 };
    expect(describeRunnerEnd(3, noOom)).to.deep.equal({ exitCode: 3, line: 'runner exited with status 3' });
    expect(describeRunnerEnd(0, noOom)).to.deep.equal({ exitCode: -1, line: 'runner exited with status 0' });
    expect(describeRunnerEnd(139, noOom)).to.deep.equal({ exitCode: 139, line: 'runner died: signal 11 (SIGSEGV)' });
    expect(describeRunnerEnd(137, noOom)).to.deep.equal({ exitCode: 137, line: 'runner died: signal 9 (SIGKILL)' });
    expect(describeRunnerEnd(137, { killed: true, limitMiB: 128 })).to.deep.equal({
      exitCode: 137,
      line: 'killed: out of memory (limit 128 MiB)',
    });
    expect(describeRunnerEnd(null, { killed: true, limitMiB: 64 }).line).to.equal('killed: out of memory (limit 64 MiB)');
    expect(describeRunnerEnd(3, { killed: true, limitMiB: 64 }).line).to.equal('runner exited with status 3'); // it exited by itself
    expect(describeRunnerEnd(null, noOom)).to.deep.equal({
      exitCode: -1,
      line: 'runner restarted (how the previous one ended is unknown)',
    });
  });
});

describe('runner inputs', () => {
  it('sends batch build and exec verbatim, `*` and empty included, a missing one as empty', () => {
    expect(batchInputs({ build: '*', exec: '*' })).to.deep.equal([
      ['build', '*'],
      ['exec', '*'],
    ]);
    expect(batchInputs({ build: 'make', exec: '' })).to.deep.equal([
      ['build', 'make'],
      ['exec', ''],
    ]);
    expect(batchInputs({ exec: 7 })).to.deep.equal([
      ['build', ''],
      ['exec', ''],
    ]);
  });

  it('asks for completions with the opts as given, line where absent, and code always the text', () => {
    expect(JSON.parse(completionRequest('pri', {}))).to.deep.equal({ line: 'pri', code: 'pri' });
    expect(JSON.parse(completionRequest('pri', { row: 1, col: 3, line: 'x = pri', post: '' }))).to.deep.equal({
      row: 1,
      col: 3,
      line: 'x = pri',
      post: '',
      code: 'pri',
    });
    expect(JSON.parse(completionRequest('pri', { code: 'spoofed' })).code).to.equal('pri');
  });
});

describe('request book', () => {
  const book = (tagged: boolean) => {
    const sent: Array<[string, string, string | null]> = [];
    let n = 0;
    const b = new RequestBook({
      tagged: () => tagged,
      newTag: () => `t${++n}`,
      send: (type, payload, tag) => void sent.push([type, payload, tag]),
    });
    return { b, sent };
  };
  const timeout = () => new Error('timed out');

  it('tagged: answers match by tag, out of order; a late answer to a timed-out request is dropped', async () => {
    const { b, sent } = book(true);
    const first = b.request('complete', 'a', 'completion', 30, timeout);
    await first.then(
      () => expect.fail('answered'),
      (e: Error) => expect(e.message).to.equal('timed out'),
    );
    const second = b.request('complete', 'b', 'completion', 1000, timeout);
    expect(b.answer('completion', 't1', Buffer.from('late'))).to.equal(false);
    expect(b.answer('completion', 't2', Buffer.from('mine'))).to.equal(true);
    expect((await second).toString()).to.equal('mine');
    expect(sent.map((s) => s[2])).to.deep.equal(['t1', 't2']);
    expect(b.dropped).to.equal(1);
  });

  it('untagged: one request of a kind in flight; after a timeout the next waits for the late answer, which is dropped', async () => {
    const { b, sent } = book(false);
    const first = b.request('complete', 'a', 'completion', 30, timeout);
    const second = b.request('complete', 'b', 'completion', 1000, timeout);
    expect(sent).to.have.length(1); // the second waits for the first
    await first.catch(() => undefined);
    expect(sent, 'the second waits for the late answer of the first').to.have.length(1);
    expect(b.answer('completion', undefined, Buffer.from('late answer of a'))).to.equal(false);
    expect(sent).to.have.length(2);
    expect(b.answer('completion', undefined, Buffer.from('answer of b'))).to.equal(true);
    expect((await second).toString()).to.equal('answer of b');
    expect(b.answer('completion', undefined, Buffer.from('unasked'))).to.equal(false);
  });

  it('untagged: a request never answered (its runner died) is taken as lost after its timeout again; the lane goes on', async () => {
    const { b, sent } = book(false);
    for (let i = 0; i < 3; i++) await b.request('status', '', 'status', 20, timeout).catch(() => undefined); // the lost ones
    const next = b.request('status', '', 'status', 1000, timeout);
    await new Promise((r) => setTimeout(r, 40)); // past the wait for the last late answer
    expect(sent).to.have.length(4);
    expect(b.answer('status', undefined, Buffer.from('fresh'))).to.equal(true);
    expect((await next).toString()).to.equal('fresh');
  });

  it('fails every request in flight when the runner is gone, and forgets the late answers owed', async () => {
    const { b, sent } = book(false);
    await b.request('status', '', 'status', 10, timeout).catch(() => undefined); // its late answer is owed
    const waiting = b.request('status', '', 'status', 1000, timeout);
    expect(sent, 'it waits for the late answer').to.have.length(1);
    b.failAll(() => new Error('gone'));
    expect(sent, 'the late answer is forgotten: it goes').to.have.length(2);
    b.failAll(() => new Error('gone'));
    await waiting.then(
      () => expect.fail('answered'),
      (e: Error) => expect(e.message).to.equal('gone'),
    );
    const next = b.request('status', '', 'status', 1000, timeout);
    expect(b.answer('status', undefined, Buffer.from('fresh'))).to.equal(true);
    expect((await next).toString()).to.equal('fresh');
  });
});

describe('run book: the output files of a run', () => {
  const sinceAsked: number[] = [];
  let ahead = 0; // how far the book's clock is ahead of the wall clock: the test moves it instead of sleeping
  const book = new RunBook({
    now: () => Date.now() + ahead,
    log: silentLogger(),
    execTimeoutSec: () => 0,
    onExecTimeout: () => undefined,
    outputFiles: async (since) => (sinceAsked.push(since), []),
    tagged: () => true,
    hurry: () => true,
    sendNext: () => undefined,
    endSaid: () => undefined,
  });

  it('counts from when a run was sent, not from when the agent heard it start, and never from before the last run ended', async () => {
    const first = new Run('r1', 't1', [['code', 'x']]);
    book.add(first);
    ahead += 15; // the runner started it long before the agent heard so
    book.begin(first);
    expect(first.filesSince).to.equal(first.createdAt);
    book.finish(first, 0);
    await book.collect(first, 2, 0);
    expect(sinceAsked).to.deep.equal([first.createdAt]);

    const queued = new Run('r2', 't2', [['code', 'y']]); // sent while r3 runs
    const running = new Run('r3', 't3', [['code', 'z']]);
    book.add(running);
    book.add(queued);
    book.begin(running);
    ahead += 15;
    book.finish(running, 0);
    book.begin(queued);
    expect(queued.filesSince).to.be.above(queued.createdAt); // what r3 wrote is not r2's
    expect(queued.filesSince).to.be.at.most(Date.now() + ahead);
  });
});

describe('run book: waits on a run', () => {
  const book = () =>
    new RunBook({
      log: silentLogger(),
      execTimeoutSec: () => 0,
      onExecTimeout: () => undefined,
      outputFiles: async () => [],
      tagged: () => true,
      hurry: () => true,
      sendNext: () => undefined,
      endSaid: () => undefined,
    });
  const settled = async (p: Promise<void>) => {
    let done = false;
    void p.then(() => (done = true)); // only observed: the promise never rejects
    await Promise.resolve();
    return done;
  };

  it('whenRun resolves when the run starts or ends, for a run not sent yet too; at once for one already there; and at releaseWaiters', async () => {
    const b = book();
    const started = b.whenRun('r1', 'started');
    const ended = b.whenRun('r1', 'ended');
    const run = new Run('r1', 't1', [['code', 'x']]);
    b.add(run);
    expect(await settled(started)).to.equal(false);
    b.begin(run);
    expect(await settled(started)).to.equal(true);
    expect(await settled(ended)).to.equal(false);
    expect(await settled(b.whenRun('r1', 'started'))).to.equal(true);
    b.finish(run, 0);
    expect(await settled(ended)).to.equal(true);
    // A run ended before it started has passed `started` too.
    const never = new Run('r2', 't2', [['code', 'y']]);
    const wait = b.whenRun('r2', 'started');
    b.add(never);
    b.end(never, -1, 'not started: test');
    expect(await settled(wait)).to.equal(true);
    const orphan = b.whenRun('r3', 'ended');
    b.releaseWaiters();
    expect(await settled(orphan)).to.equal(true);
  });
});
