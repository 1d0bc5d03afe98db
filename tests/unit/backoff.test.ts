/** The reconnect backoff (bounded, jittered) and the one-line-per-outage bookkeeping. */
import { expect } from 'chai';
import { backoffDelay, Outage } from '../../src/util/backoff.js';

describe('backoff', () => {
  const policy = { baseMs: 100, maxMs: 1000, jitter: 0.5 };

  it('doubles from the base and never passes the bound', () => {
    expect([1, 2, 3, 4, 5, 50, 5000].map((n) => backoffDelay(n, policy, 0.5))).to.deep.equal([100, 200, 400, 800, 1000, 1000, 1000]);
  });

  it('moves each delay by up to the jitter share, never above the bound', () => {
    expect(backoffDelay(1, policy, 0)).to.equal(50);
    expect(backoffDelay(1, policy, 0.999999)).to.equal(150);
    expect(backoffDelay(10, policy, 0)).to.equal(500);
    expect(backoffDelay(10, policy, 0.999999)).to.equal(1000);
  });

  it('says an outage once when it starts and once when it ends', () => {
    const o = new Outage();
    expect(o.recover(0)).to.equal(null);
    expect([o.fail(1000), o.fail(2000), o.fail(3000)]).to.deep.equal([true, false, false]);
    expect(o.active).to.equal(true);
    expect(o.recover(4500)).to.equal(3500);
    expect(o.recover(5000)).to.equal(null);
    expect(o.fail(6000)).to.equal(true);
  });
});
