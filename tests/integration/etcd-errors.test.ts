/**
 * etcd failures arrive typed at the adapter (castEtcdError): an etcd that
 * does not answer is a retryable EtcdUnavailableError naming the address and
 * what to do; a request the real etcd refuses is an EtcdError naming the step.
 */
import { expect } from 'chai';
import { EtcdStore } from '../../src/adapters/etcd.js';
import { parseEndpoints } from '../../src/config/options.js';
import { EtcdError, EtcdUnavailableError, isRetryable } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { ETCD_ADDR, freePort, onCleanup, requireEtcd, uniqueName } from '../helpers/env.js';

describe('etcd errors, typed at the adapter', function () {
  this.timeout(30_000);

  const store = (addr: string) => {
    const s = new EtcdStore(parseEndpoints(addr, '--etcd-addr'), uniqueName('etcd-errors'), silentLogger());
    onCleanup(() => s.close());
    return s;
  };

  it('an etcd that does not answer is a retryable EtcdUnavailableError naming the address and the fix', async () => {
    const addr = `127.0.0.1:${await freePort()}`; // nothing listens there
    const err = await store(addr)
      .get('nodes/manager')
      .then(
        () => expect.fail('a read from an etcd that is not there succeeded'),
        (e: unknown) => e,
      );
    expect(err).to.be.instanceOf(EtcdUnavailableError);
    expect(isRetryable(err)).to.equal(true);
    expect((err as EtcdUnavailableError).message)
      .to.contain(addr)
      .and.to.contain('reading nodes/manager')
      .and.to.contain('--etcd-addr');
    expect((err as EtcdUnavailableError).reason)
      .to.be.a('string')
      .and.not.equal('');
  });

  it('a request etcd refuses is a non-retryable EtcdError naming the step', async () => {
    await requireEtcd();
    const refused = async (p: Promise<unknown>) =>
      p.then(
        () => expect.fail('etcd took it'),
        (e: unknown) => e,
      );
    // a write under a lease that was revoked
    const s = store(ETCD_ADDR);
    const lease = s.lease(5);
    await lease.id();
    await lease.revoke();
    const lost = await refused(lease.put('held', 'x'));
    expect(lost).to.be.instanceOf(EtcdError);
    expect(isRetryable(lost)).to.equal(false);
    expect((lost as EtcdError).message)
      .to.contain('writing held under a lease')
      .and.to.contain(ETCD_ADDR);
    // a value over the size limit of the gRPC channel is refused however often it is sent
    const big = await refused(store(ETCD_ADDR).put('too-large', 'x'.repeat(3 * 1024 * 1024)));
    expect(big).to.be.instanceOf(EtcdError);
    expect(isRetryable(big)).to.equal(false);
    expect((big as EtcdError).message).to.contain('writing too-large');
  });
});
