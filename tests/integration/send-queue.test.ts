/**
 * SendQueue over eagerSender with real ZeroMQ sockets: sockets made with
 * `sendTimeout: 0` send at once, wait only when the socket refuses (EAGAIN),
 * keep the order of the queue, and hand every failure to the callback.
 */
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { eagerSender, SendQueue } from '../../src/wire/send-queue.js';
import { freePort, onCleanup } from '../helpers/env.js';
import { waitRealTime } from '../helpers/real-time.js';

function dealer(endpoint: string): zmq.Dealer {
  const d = new zmq.Dealer({ linger: 0, sendTimeout: 0 });
  d.connect(endpoint);
  onCleanup(() => d.close());
  return d;
}

async function receiveN(router: zmq.Router, n: number): Promise<string[]> {
  const got: string[] = [];
  while (got.length < n) {
    const [, body] = await router.receive();
    got.push(body!.toString());
  }
  return got;
}

describe('eager sends (SendQueue over eagerSender)', () => {
  it('waits for a peer that is not there yet (EAGAIN), delivers everything in order, then sends eagerly again', async () => {
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    const d = dealer(endpoint);
    const failures: unknown[] = [];
    const queue = new SendQueue(eagerSender(d, -1), (err) => failures.push(err));
    const sent = Array.from({ length: 2000 }, (_, i) => `m${i}`);
    for (const m of sent) expect(queue.push([m])).to.equal(true);
    await waitRealTime(
      200,
      'nobody listens: the pipe is full at its high-water mark (1000), and a queue that dropped or lost its messages would be empty by now',
    );
    expect(queue.size).to.be.greaterThan(0);
    const router = new zmq.Router({ linger: 0 });
    onCleanup(() => router.close());
    await router.bind(endpoint);
    expect(await receiveN(router, sent.length)).to.deep.equal(sent);
    await queue.drained();
    expect(failures).to.deep.equal([]);
    expect(d.sendTimeout).to.equal(0);
  });

  it('gives up after the wait it was given and reports each refused message to the callback', async () => {
    // With no peer, ZeroMQ still queues up to the high-water mark (1 here) for the connection to come; the rest is refused.
    const d = new zmq.Dealer({ linger: 0, sendTimeout: 0, sendHighWaterMark: 1 });
    d.connect(`tcp://127.0.0.1:${await freePort()}`);
    onCleanup(() => d.close());
    const failures: Array<{ code?: string; frames: unknown[] }> = [];
    const queue = new SendQueue(eagerSender(d, 100), (err, frames) => failures.push({ code: (err as { code?: string }).code, frames }));
    const sent = ['m0', 'm1', 'm2', 'm3', 'm4'];
    for (const m of sent) queue.push([m]);
    await queue.drained();
    expect(failures.length).to.be.within(1, sent.length);
    expect(failures.map((f) => f.code)).to.deep.equal(failures.map(() => 'EAGAIN'));
    expect(failures.map((f) => f.frames[0])).to.deep.equal(sent.slice(sent.length - failures.length));
    expect(d.sendTimeout).to.equal(0);
  });

  it('does not wait on other errors: a mandatory ROUTER refuses an unknown peer with EHOSTUNREACH', async () => {
    const router = new zmq.Router({ linger: 0, mandatory: true, sendTimeout: 0 });
    onCleanup(() => router.close());
    await router.bind(`tcp://127.0.0.1:${await freePort()}`);
    const failures: unknown[] = [];
    const queue = new SendQueue(eagerSender(router, 60_000), (err) => failures.push(err));
    queue.push(['nobody', 'x']);
    await queue.drained(); // would take a minute had the sender waited
    expect(failures.map((e) => (e as { code?: string }).code)).to.deep.equal(['EHOSTUNREACH']);
    expect(router.sendTimeout).to.equal(0);
  });
});
