/** The reconciliation plan of sync_kernels (src/kernels/sync.ts): pure, so every case is a table row. */
import { expect } from 'chai';
import { planSync } from '../../src/kernels/sync.js';
import { planSelfSync } from '../../src/kernels/self-sync.js';

describe('sync_kernels plan', () => {
  it('reports missing ids, marks unlisted kernels, and destroys them only after the grace period', () => {
    const first = planSync({ held: ['a', 'b', 'c'], listed: ['a', 'x'], marks: new Map(), now: 1000, graceSec: 10 });
    expect(first.result).to.deep.equal({ missing: ['x'], extra: ['b', 'c'], destroyed: [], pending: ['b', 'c'] });
    expect([...first.marks]).to.deep.equal([
      ['b', 1000],
      ['c', 1000],
    ]);
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

describe('self-sync plan', () => {
  const c = (id: string, labels: Record<string, string>) => ({ id, running: true, labels, imageId: 'sha256:x', createdMs: 0 });
  it("destroys records whose container is gone and removes this agent's kernel containers no kernel accounts for", () => {
    const records = [
      { id: 'a', containerId: 'ca', state: 'running', busy: null },
      { id: 'lost', containerId: 'gone', state: 'running', busy: null },
      { id: 'restarting', containerId: 'old', state: 'restarting', busy: Promise.resolve() },
    ];
    const containers = [
      c('ca', { 'io.compute-agent.kernel-id': 'a' }),
      c('new', { 'io.compute-agent.kernel-id': 'restarting' }), // the restart's new container
      c('stray', { 'io.compute-agent.kernel-id': 'forgotten' }),
      c('creating', { 'io.compute-agent.kernel-id': 'in-flight' }),
      c('pooled', { 'io.compute-agent.pool': 'python:small' }),
    ];
    expect(planSelfSync(records, containers, (id) => id === 'in-flight')).to.deep.equal({ lostContainers: ['lost'], strays: ['stray'] });
  });
});
