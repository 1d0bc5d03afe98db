/**
 * A hostile runner that claims the `keep` extension (issue 28;
 * docs/running-code.rst, "Kept output"): it numbers records out of order,
 * repeats them, floods gaps and sends markers of output it says it dropped.
 * Against the agent's own KernelRelay and a stand-in runner on loopback (real
 * ZeroMQ sockets): the relay takes each number once, asks `resend` once per
 * gap however many records follow it, never crashes, and each run gets only
 * what the runner sent for it in sequence.
 */
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { pack } from 'msgpackr';
import { KernelRelay } from '../../src/relay/kernel-relay.js';
import { eventually } from '../helpers/env.js';
import { recordingLogger } from '../helpers/etcd-cluster.js';
import { consoleText } from '../helpers/run.js';

describe('a hostile runner that keeps output', function () {
  this.timeout(30_000);

  it('out-of-order, repeated and flooded numbers: each taken once, one resend per gap, each run only its own', async () => {
    const inputs = new zmq.Pull({ linger: 0 });
    const records = new zmq.Push({ linger: 0, sendHighWaterMark: 100_000 });
    await inputs.bind('tcp://127.0.0.1:*');
    await records.bind('tcp://127.0.0.1:*');
    const port = (s: zmq.Socket) => Number(s.lastEndpoint!.split(':').pop());
    let sending = Promise.resolve();
    const send = (...frames: Array<string | Buffer>) => (sending = sending.then(() => records.send(frames)));
    const rec = (type: string, payload: string, t: string, s: number, lost = false) =>
      send(type, payload, JSON.stringify({ g: 'G1', t, s, ...(lost ? { lost: true } : {}) }));
    const relay = new KernelRelay({
      host: '127.0.0.1',
      replInPort: port(inputs),
      replOutPort: port(records),
      log: recordingLogger().child({ kernelId: 'k-hostile-keep' }),
      execTimeoutSec: 0,
      onExecTimeout: () => undefined,
      outputFiles: async () => [],
    });
    const got: Array<{ type: string; payload: string; meta: Record<string, unknown> }> = [];
    const served = (async () => {
      for await (const [type, payload, meta] of inputs) {
        const t = type!.toString();
        if (t === 'hello') await send('hello', JSON.stringify({ generation: 'G1', features: ['keep'] }));
        else if (t === 'status') await send('status', pack({ generation: 'G1' }));
        else
          got.push({ type: t, payload: payload!.toString(), meta: meta ? (JSON.parse(meta.toString()) as Record<string, unknown>) : {} });
      }
    })().catch(() => undefined); // the sockets closed
    const tagOf = async (run: string) => {
      await eventually(`run ${run} sent`, () => got.some((g) => g.type === 'code' && g.meta.run === run));
      return got.find((g) => g.type === 'code' && g.meta.run === run)!.meta.t as string;
    };
    const asked = (type: string, t: string) => got.filter((g) => g.type === type && g.meta.t === t).map((g) => g.payload);
    try {
      await relay.ready(10_000);
      expect(relay.protocol).to.equal('tagged');

      const a = relay.execute({ apiVersion: 2, runId: 'a', mode: 'query', code: 'x', opts: {}, flushTimeoutMs: 20_000 });
      const ta = await tagOf('a');
      expect(got.find((g) => g.meta.t === ta)!.meta.keep).to.equal(true);
      await rec('stdout', 'one ', ta, 1);
      await rec('stdout', 'dup ', ta, 1); // seen: dropped
      for (let s = 5; s < 2005; s++) await rec('stdout', 'gap ', ta, s); // after a gap: dropped, one resend
      await rec('stderr', '[lost?]', ta, 1, true); // a marker behind: dropped
      await rec('stdout', 'two ', ta, 2);
      await rec('stderr', '[lost]', ta, 1000, true); // a marker ahead: moves the run past it
      await rec('stdout', 'late ', ta, 999); // behind the marker: dropped
      await rec('finished', '{"exitCode": 0}', ta, 1001);
      const ra = await a;
      expect([ra.status, ra.exitCode]).to.deep.equal(['finished', 0]);
      expect(consoleText([ra], 'stdout')).to.equal('one two ');
      expect(consoleText([ra], 'stderr')).to.equal('[lost]');
      await eventually('the ack of run a', () => asked('ack', ta).length > 0);
      expect(asked('resend', ta)).to.deep.equal(['{"from":2}']);
      expect(asked('ack', ta)).to.deep.equal(['{"s":1001}']);

      // The next run gets only its own, whatever numbers the runner still sends for the first.
      const b = relay.execute({ apiVersion: 2, runId: 'b', mode: 'query', code: 'y', opts: {}, flushTimeoutMs: 20_000 });
      const tb = await tagOf('b');
      await rec('stdout', 'stray ', ta, 1002);
      await rec('stdout', 'mine', tb, 1);
      await rec('finished', '{"exitCode": 5}', tb, 2);
      const rb = await b;
      expect([consoleText([rb], 'stdout'), rb.exitCode]).to.deep.equal(['mine', 5]);
    } finally {
      relay.close('the test ended');
      inputs.close();
      records.close();
      await served;
    }
  });
});
