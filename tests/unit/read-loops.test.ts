/**
 * The read loops never end silently: a record their handler cannot handle is
 * logged (error, with the stack and the kernel id) and the runs or calls
 * waiting on the loop end at once with the reason, not at their timeouts.
 * The peers are real ZeroMQ sockets on loopback: a stand-in runner, a
 * stand-in agent.
 */
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { pack } from 'msgpackr';
import { KernelRelay } from '../../src/relay/kernel-relay.js';
import { RunnerLink } from '../../src/relay/runner-link.js';
import { parseHello } from '../../src/relay/runner-records.js';
import { AgentClient } from '../../src/rpc/client.js';
import { encodeReplyHeader } from '../../src/wire/headers.js';
import { recordingLogger } from '../helpers/etcd-cluster.js';

/** A stand-in runner: a PULL for the agent's inputs and a PUSH for its records, bound to free ports. */
async function fakeRunner() {
  const inputs = new zmq.Pull({ linger: 0 });
  const records = new zmq.Push({ linger: 0 });
  await inputs.bind('tcp://127.0.0.1:*');
  await records.bind('tcp://127.0.0.1:*');
  const port = (s: zmq.Socket) => Number(s.lastEndpoint!.split(':').pop());
  return {
    inPort: port(inputs),
    outPort: port(records),
    /** The next input of this type (others are skipped). */
    async next(type: string): Promise<Buffer[]> {
      for (;;) {
        const frames = await inputs.receive();
        if (frames[0]!.toString() === type) return frames;
      }
    },
    send: (type: string, payload: string | Buffer, meta?: object) => records.send([type, payload, ...(meta ? [JSON.stringify(meta)] : [])]),
    close() {
      inputs.close();
      records.close();
    },
  };
}

describe('read loops', function () {
  this.timeout(15_000);

  it('a relay whose restart handling throws ends its run at once, with the reason, and logs it with the kernel id', async () => {
    const runner = await fakeRunner();
    const log = recordingLogger();
    const relay = new KernelRelay({
      host: '127.0.0.1',
      replInPort: runner.inPort,
      replOutPort: runner.outPort,
      log: log.child({ kernelId: 'k-loop' }),
      execTimeoutSec: 0,
      onExecTimeout: () => undefined,
      outputFiles: async () => [],
      onRunnerRestart: () => {
        throw new Error('a bug in the restart callback');
      },
    });
    try {
      await runner.next('hello');
      await runner.send('hello', JSON.stringify({ generation: 'g1' }));
      const started = Date.now();
      const result = relay.execute({ apiVersion: 2, runId: 'r1', mode: 'query', code: 'x', opts: {}, flushTimeoutMs: 60_000 });
      const [, , meta] = await runner.next('code');
      const { t } = JSON.parse(meta!.toString()) as { t: string };
      await runner.send('started', '', { g: 'g1', t });
      await runner.send('hello', JSON.stringify({ generation: 'g2', previous: { status: 139 } }), { g: 'g2' });
      const r = await result;
      expect(Date.now() - started).to.be.below(10_000); // not the 60 s flush timeout
      expect(r.status).to.equal('finished');
      expect(r.exitCode).to.equal(-1);
      expect(JSON.stringify(r.console)).to.contain("the agent's relay to this kernel failed (a bug in the restart callback");
      const line = log.lines.find((l) => l.startsWith('error the relay failed handling a restart'));
      expect(line, log.lines.join('\n')).to.be.a('string');
      expect(line).to.contain('"kernelId":"k-loop"').and.contain('a bug in the restart callback').and.contain('"stack":"Error: a bug');
    } finally {
      relay.close();
      runner.close();
    }
  });

  it('a link whose record handler throws logs it, reports it, and goes on reading', async () => {
    const runner = await fakeRunner();
    const log = recordingLogger();
    const failures: unknown[] = [];
    const seen: string[] = [];
    const link = new RunnerLink(
      { host: '127.0.0.1', replInPort: runner.inPort, replOutPort: runner.outPort, log: () => log.child({ kernelId: 'k-link' }) },
      {
        answered: () => undefined,
        synced: () => undefined,
        record: (rec) => {
          if (rec.type === 'stdout') throw new Error('cannot handle this record');
          seen.push(rec.type);
          return undefined;
        },
        failed: (err) => failures.push(err),
        cut: () => undefined,
      },
    );
    try {
      await runner.next('hello');
      await runner.send('hello', JSON.stringify({ generation: 'g1' }));
      await link.whenSynced();
      expect(link.mode).to.equal('tagged');
      await runner.send('stdout', 'x', { g: 'g1', t: 'a.1' });
      await runner.send('finished', '{}', { g: 'g1', t: 'a.1' });
      while (seen.length === 0) await new Promise((r) => setImmediate(r));
      expect(seen).to.deep.equal(['finished']); // the loop went on after the failure
      expect(failures.map((e) => (e as Error).message)).to.deep.equal(['cannot handle this record']);
      expect(
        log.count(/^error the relay failed handling a record .*"kernelId":"k-link".*"record":"stdout".*"stack":"Error: cannot handle/),
      ).to.equal(1);
    } finally {
      link.close();
      runner.close();
    }
  });

  it('a hello whose recent list holds null is read, not thrown on', () => {
    // Such a hello once threw inside the relay's read loop; the loop now survives it, and the record reads.
    const rec = parseHello(Buffer.from(JSON.stringify({ generation: 'g', recent: [null, { t: 'e.1', exitCode: 0 }] })));
    expect(rec!.recent).to.deep.equal([{ t: 'e.1', run: null, exitCode: 0, acked: 0 }]);
  });

  it('an RPC client whose reply it cannot handle fails its calls at once and logs it', async () => {
    const agent = new zmq.Router({ linger: 0 });
    await agent.bind('tcp://127.0.0.1:*');
    const log = recordingLogger();
    const client = new AgentClient(agent.lastEndpoint!, { timeoutMs: 60_000, log });
    try {
      const started = Date.now();
      const call = client.callRaw('ping', ['x']);
      const [peer, header] = await agent.receive();
      const requestId = header!.readUInt32LE(4);
      // An error reply whose type is a map with a `toString` key: String() of it throws inside the read loop.
      const reply = encodeReplyHeader({ pid: 1, random: 1, requestId, time: 0, isError: true });
      await agent.send([peer!, reply, pack([{ toString: 1 }, [], 'x'])]);
      const err = await call.then(
        () => null,
        (e: Error) => e,
      );
      expect(Date.now() - started).to.be.below(10_000);
      expect(err?.message).to.match(/^the client's read loop failed \(.+\); the client is closed: make a new one$/);
      expect(log.count(/^error the RPC client stopped reading replies .*"stack"/)).to.equal(1);
      const after = await client.callRaw('ping', []).then(
        () => null,
        (e: Error) => e,
      );
      expect(after?.message).to.equal(err?.message);
    } finally {
      client.close();
      agent.close();
    }
  });
});
