/**
 * A hostile runner of another make (issue 29): the relay serves runners that
 * do not tag with section 4 only, so what such a runner sends is taken at its
 * word for its own kernel, and must reach no further. Against the agent's own
 * KernelRelay, a stand-in runner on loopback (real ZeroMQ sockets) floods end
 * records for no run, ends a run with thousands of `finished` records without
 * an exit code, and answers `status` with what is no map or a start time that
 * never stays the same. The relay logs one line for the flood, asks no more
 * than one `status` per run for the ends, never crashes, and its next run gets
 * its own output. A manager's completion opts cannot replace the text the
 * runner is asked to complete.
 */
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { pack } from 'msgpackr';
import { KernelRelay } from '../../src/relay/kernel-relay.js';
import type { RunResult } from '../../src/rpc/results.js';
import { eventually } from '../helpers/env.js';
import { recordingLogger } from '../helpers/etcd-cluster.js';
import { consoleText } from '../helpers/run.js';

describe('a hostile runner of another make', function () {
  this.timeout(30_000);

  it('floods ends and odd statuses: one log line, one status asked per run, and the next run gets only its own output', async () => {
    const inputs = new zmq.Pull({ linger: 0 });
    const records = new zmq.Push({ linger: 0, sendHighWaterMark: 100_000 });
    await inputs.bind('tcp://127.0.0.1:*');
    await records.bind('tcp://127.0.0.1:*');
    const port = (s: zmq.Socket) => Number(s.lastEndpoint!.split(':').pop());
    let sending = Promise.resolve();
    /** Sends a record of the runner (one send at a time: the test and the runner's answers share the socket). */
    const send = (...frames: Array<string | Buffer>) => (sending = sending.then(() => records.send(frames)));
    const log = recordingLogger();
    const relay = new KernelRelay({
      host: '127.0.0.1',
      replInPort: port(inputs),
      replOutPort: port(records),
      log: log.child({ kernelId: 'k-hostile' }),
      execTimeoutSec: 0,
      onExecTimeout: () => undefined,
      outputFiles: async () => [],
    });
    // The runner: every status answered with the next of these (a string, bytes, a start time that changes), codes kept.
    const odd = [pack('not a map'), Buffer.from([0xc1, 0xff]), pack({ started_at: [[[1]]] })];
    let statuses = 0;
    const got: Array<[string, string]> = [];
    const served = (async () => {
      for await (const [type, payload] of inputs) {
        const t = type!.toString();
        if (t === 'status') await send('status', statuses < 3 ? odd[statuses++]! : pack({ started_at: statuses++ }));
        else got.push([t, payload!.toString()]);
      }
    })().catch(() => undefined); // the sockets closed
    try {
      await relay.ready(10_000);
      expect(relay.protocol).to.equal('untagged');

      for (let i = 0; i < 2000; i++) await send(i % 2 ? 'finished' : 'build-finished', '{"exitCode": 0}');
      await eventually('the flood of end records counted', () => relay.strayEnds === 2000);
      expect(log.count(/end record for no run going/)).to.equal(1);

      const asked = statuses;
      const a = relay.execute({ apiVersion: 2, runId: 'a', mode: 'query', code: 'x', opts: {}, flushTimeoutMs: 20_000 });
      await eventually('run a sent', () => got.some(([t]) => t === 'code'));
      for (let i = 0; i < 2000; i++) await send('finished', '{"upload_output_files": false}');
      const ra: RunResult = await a;
      expect([ra.status, ra.exitCode]).to.deep.equal(['finished', null]);
      await eventually('the rest of the flood dropped', () => relay.strayEnds >= 2000 + 1998);
      expect(statuses - asked).to.be.at.most(2); // one after the run's inputs, one after its first end: not one per record

      const b = relay.execute({ apiVersion: 2, runId: 'b', mode: 'query', code: 'y', opts: {}, flushTimeoutMs: 20_000 });
      await eventually('run b sent', () => got.filter(([t]) => t === 'code').length === 2);
      await send('stdout', 'mine');
      await send('finished', '{"exitCode": 5}');
      const rb = await b;
      expect([consoleText([rb], 'stdout'), rb.exitCode]).to.deep.equal(['mine', 5]);

      const completion = relay.complete('real text', { code: 'spoofed', line: 'a line', extra: [1] });
      await eventually('the complete request', () => got.some(([t]) => t === 'complete'));
      await send('completion', '["c"]');
      expect(await completion).to.deep.equal(['c']);
      const sent = JSON.parse(got.find(([t]) => t === 'complete')![1]) as Record<string, unknown>;
      expect(sent).to.deep.equal({ code: 'real text', line: 'a line', extra: [1] });
    } finally {
      relay.close('the test ended');
      inputs.close();
      records.close();
      await served;
    }
  });
});
