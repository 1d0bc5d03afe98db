/** Pure parts of agentctl and the client library: language names, event lines, the wire error names. */
import { expect } from 'chai';
import { compressSync } from 'snappy';
import * as errors from '../../src/errors.js';
import { decodeHeartbeatImages } from '../../src/events/receiver.js';
import { resolveLang } from '../../src/cli/ctl/run.js';
import { eventLine } from '../../src/cli/ctl/events.js';
import { msgpackCodec } from '../../src/wire/codec.js';

describe('agentctl parts', () => {
  it('resolves short language names to the image of this node, and leaves name:tag alone', () => {
    expect(resolveLang('python')).to.equal('python:3-debian');
    expect(resolveLang('python:3.12')).to.equal('python:3.12');
    expect(resolveLang('r')).to.equal('r');
  });

  it('prints a heartbeat as one line with its images decoded', () => {
    const images = compressSync(msgpackCodec.encode([['python:3-debian', 'sha256:abc']]));
    const line = eventLine({
      name: 'instance_heartbeat',
      agentId: 'i-1',
      args: [{ addr: 'tcp://h:6001', cpu_slots: 2, mem_slots: 1024, images }],
      receivedAt: Date.UTC(2026, 0, 1, 12, 0, 0, 5),
    });
    expect(line).to.equal('12:00:00.005 i-1 instance_heartbeat addr=tcp://h:6001 cpu_slots=2 mem_slots=1024 images=python:3-debian');
    expect(eventLine({ name: 'kernel_terminated', agentId: 'i-1', args: ['k1', 'idle-timeout', null], receivedAt: 0 })).to.equal(
      '00:00:00.000 i-1 kernel_terminated k1 reason=idle-timeout',
    );
    expect(decodeHeartbeatImages(Buffer.from('not snappy'))).to.deep.equal([]);
  });

  it('WireErrors names exactly the wire types of the error catalogue, and RemoteError is retryable as the agent error is', () => {
    const names = new Set<string>();
    const samples: errors.AgentError[] = [
      new errors.ParametersError('x'),
      new errors.MethodNotFoundError('m'),
      new errors.NotImplementedYetError('m'),
      new errors.KernelNotFoundError('k'),
      new errors.InvalidPathError('x'),
      new errors.FileTooLargeError('x'),
      new errors.KernelFileNotFoundError('x'),
      new errors.ImageNotFoundError('i'),
      new errors.DockerError('x'),
      new errors.KernelCreationError('x'),
      new errors.NoResourcesError('x'),
      new errors.RunNotFoundError('x'),
      new errors.RunLostError('x'),
      new errors.KernelUnresponsiveError('x'),
      new errors.AgentShuttingDownError(),
      new errors.NodeDrainingError('x'),
      new errors.InternalError('x'),
      new errors.ConfigError('x'),
      new errors.ImagePullError('x'),
      new errors.ImageInUseError('x'),
      new errors.ImageCommitError('x'),
      new errors.ImagePushError('x'),
      new errors.DestroyPendingError('x'),
      new errors.ImpossibleRequestError('x'),
      new errors.NoSpaceError('x'),
      new errors.EtcdUnavailableError('x', 'unavailable'),
      new errors.EtcdError('x'),
    ];
    for (const e of samples) {
      names.add(e.wireName);
      expect(new errors.RemoteError(e.wireName, ['m'], '').retryable, e.wireName).to.equal(e.retryable);
      // a Callosum reply carries the short name only
      expect(new errors.RemoteError(errors.shortWireName(e.wireName), ['m'], '').retryable, e.wireName).to.equal(e.retryable);
      expect(errors.isRetryable(e)).to.equal(e.retryable);
    }
    expect(new Set(Object.values(errors.WireErrors))).to.deep.equal(names);
    expect(new errors.RemoteError('agent.SomethingNew', ['m'], '').retryable).to.equal(false);
  });

  it("WireErrors is derived from the classes: each constant is its class's wire name, and no two classes share one", () => {
    const seen = new Map<string, string>();
    for (const [key, cls] of Object.entries(errors.WIRE_ERROR_CLASSES)) {
      expect(errors.WireErrors[key as keyof typeof errors.WireErrors]).to.equal(cls.wireName);
      expect(seen.get(cls.wireName), `${cls.name} and ${seen.get(cls.wireName)} both say ${cls.wireName}`).to.equal(undefined);
      expect(seen.get(errors.shortWireName(cls.wireName)), `${cls.name}'s short name is taken`).to.equal(undefined);
      seen.set(cls.wireName, cls.name).set(errors.shortWireName(cls.wireName), cls.name);
      expect(errors.wireErrorClass(cls.wireName)).to.equal(cls);
    }
    expect([errors.WireErrors.KernelNotFound, errors.WireErrors.Parameters]).to.deep.equal([
      'agent.KernelNotFound',
      'aiozmq.rpc.base.ParametersError',
    ]);
  });
});
