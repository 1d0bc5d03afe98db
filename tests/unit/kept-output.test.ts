import { expect } from 'chai';
import { inSequence } from '../../src/relay/kept-output.js';
import type { RunnerRecord } from '../../src/relay/runner-records.js';
import { Run } from '../../src/relay/runs.js';

const rec = (s?: number, lost = false): RunnerRecord => ({
  type: 'stdout',
  payload: Buffer.from('x'),
  meta: s === undefined ? { t: 'e.1' } : { t: 'e.1', s, ...(lost ? { lost: true } : {}) },
});

describe('kept output: records in sequence', () => {
  it('takes each numbered record once, in order; after a gap asks once from the first missing; a lost marker moves past', () => {
    const run = new Run('r', 'e.1', [], true);
    run.nextSeq = 3; // the previous agent acknowledged 2
    const asked: number[] = [];
    const take = (r: RunnerRecord) => inSequence(run, r, (from) => asked.push(from));
    // Records 6 and 7 were already in the socket: a gap, asked for again once.
    expect([take(rec(6)), take(rec(7))]).to.deep.equal([false, false]);
    expect(asked).to.deep.equal([3]);
    // The resend: 3 to 7, then 6 and 7 again (seen) and 8.
    expect([3, 4, 5, 6, 7, 6, 7, 8].map((s) => take(rec(s)))).to.deep.equal([true, true, true, true, true, false, false, true]);
    expect(run.lastSeq).to.equal(8);
    // Output the runner dropped: its marker is numbered as the last one dropped.
    expect(take(rec(12, true))).to.equal(true);
    expect(take(rec(13))).to.equal(true);
    expect(take(rec(12, true))).to.equal(false);
    expect(asked).to.deep.equal([3]);
    // A runner that does not keep: nothing is numbered, everything is taken.
    const plain = new Run('p', 'e.2', []);
    expect([take(rec()), inSequence(plain, rec(), () => expect.fail('no resend'))]).to.deep.equal([true, true]);
    expect(plain.nextSeq).to.equal(null);
  });
});
