/** The reconciliation plan of sync_kernels (src/kernels/sync.ts): pure, so every case is a table row. */
import { expect } from 'chai';
import { planSync } from '../../src/kernels/sync.js';

describe('sync_kernels plan', () => {
  it('reports missing ids, marks unlisted kernels, and destroys them only after the grace period', () => {
    const first = planSync({ held: ['a', 'b', 'c'], listed: ['a', 'x'], marks: new Map(), now: 1000, graceSec: 10 });
    expect(first.result).to.deep.equal({ missing: ['x'], extra: ['b', 'c'], destroyed: [], pending: ['b', 'c'] });
    expect([...first.marks]).to.deep.equal([['b', 1000], ['c', 1000]]);
    // c is listed again: its mark goes; b stays unlisted past the grace
    const later = planSync({ held: ['a', 'b', 'c'], listed: ['a', 'c'], marks: first.marks, now: 11_000, graceSec: 10 });
    expect(later.result).to.deep.equal({ missing: [], extra: ['b'], destroyed: ['b'], pending: [] });
    expect(later.marks.size).to.equal(0);
    const early = planSync({ held: ['b'], listed: [], marks: first.marks, now: 10_999, graceSec: 10 });
    expect(early.result.destroyed).to.deep.equal([]);
  });

  it('with sync_grace 0 only reports, however long a kernel stays unlisted', () => {
    const plan = planSync({ held: ['b'], listed: [], marks: new Map([['b', 0]]), now: 10 ** 12, graceSec: 0 });
    expect(plan.result).to.deep.equal({ missing: [], extra: ['b'], destroyed: [], pending: ['b'] });
  });
});
