/**
 * SendBuffers (src/wire/send-buffers.ts): a big reply's buffer is used again
 * only once the message packed into it has been collected, never while
 * anyone (ZeroMQ included) can still read it; and encodeForSend packs the
 * same bytes as encode.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { msgpackCodec, sendBuffers } from '../../src/wire/codec.js';
import { SendBuffers } from '../../src/wire/send-buffers.js';
import { Utf8Text } from '../../src/wire/utf8-text.js';
import { FakeClock } from '../helpers/fake-clock.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Collects garbage until the registry's callbacks (they run in a later task) have had their chance. */
async function collect(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
}

const MiB = 1024 * 1024;

describe('send buffers', () => {
  it('reuses a buffer once the message in it is collected, not before', async () => {
    const pool = new SendBuffers({ maxFree: 2, idleMs: 60_000 });
    const into = pool.take(5 * MiB);
    let held: Buffer | null = pool.track(into.subarray(0, 10), into);
    const first = into.buffer;
    await collect();
    expect(pool.freeCount, 'the message is still referenced').to.equal(0);
    expect(pool.take(5 * MiB).buffer).to.not.equal(first);
    expect(held.length).to.equal(10);
    // eslint-disable-next-line no-useless-assignment -- dropping the last reference is what lets the collector take the message
    held = null;
    await collect();
    expect(pool.freeCount).to.equal(1);
    expect(pool.take(5 * MiB).buffer).to.equal(first);
    expect(pool.stats.reused).to.equal(1);
  });

  it('keeps at most maxFree buffers and leaves alone a message packed elsewhere', async () => {
    const pool = new SendBuffers({ maxFree: 1, idleMs: 60_000 });
    for (let i = 0; i < 3; i++) {
      const into = pool.take(MiB);
      pool.track(into.subarray(0, 1), into);
    }
    const other = pool.take(MiB);
    pool.track(Buffer.alloc(1), other); // not a view of `other`: nothing to give back
    await collect();
    expect(pool.freeCount).to.equal(1);
    expect(pool.stats.returned).to.equal(3);
  });

  it('drops its free buffers after they were idle', async () => {
    const clock = new FakeClock();
    const pool = new SendBuffers({ maxFree: 2, idleMs: 300, setTimer: clock.setTimeout });
    const into = pool.take(MiB);
    pool.track(into.subarray(0, 1), into);
    await collect();
    expect(pool.freeCount).to.equal(1);
    clock.advance(299);
    expect(pool.freeCount).to.equal(1); // not idle long enough yet
    clock.advance(1);
    expect(pool.freeCount).to.equal(0);
  });

  it('encodeForSend packs what encode packs, and replies sent through ZeroMQ arrive whole while their buffers are reused', async () => {
    const push = new zmq.Push({ linger: 0 });
    const pull = new zmq.Pull({ linger: 0 });
    await pull.bind('tcp://127.0.0.1:*');
    push.connect(pull.lastEndpoint!);
    try {
      const before = { ...sendBuffers.stats };
      for (let i = 0; i < 12; i++) {
        const text = new Utf8Text();
        for (let k = 0; k < 64; k++) text.appendUtf8(Buffer.alloc(64 * 1024, 97 + ((i + k) % 26)));
        const value = { runId: `r${i}`, status: 'continued', console: [['stdout', text]] };
        const expected = msgpackCodec.encode(value);
        await push.send([msgpackCodec.encodeForSend!(value)]);
        const [got] = await pull.receive();
        expect(Buffer.compare(got!, expected), `reply ${i}`).to.equal(0);
        await collect();
      }
      expect(sendBuffers.stats.reused - before.reused, 'buffers reused').to.be.greaterThan(0);
    } finally {
      push.close();
      pull.close();
    }
  });
});
