/** The memory book, the schedulable totals and the refusal of requests a node could never hold (src/node/memory.ts). */
import { expect } from 'chai';
import { ImpossibleRequestError, isRetryable, NoResourcesError, ParametersError } from '../../src/errors.js';
import { checkPossible, MemoryBook, MemoryExhausted, schedulable } from '../../src/node/memory.js';

describe('memory accounting', () => {
  it('computes the schedulable totals from the reserve and the overcommits', () => {
    expect(schedulable({ cores: 2, memMiB: 24_000 }, { cpuOvercommit: 3, memReserveMiB: 1024, memOvercommit: 1 })).to.deep.equal({
      cpuSlots: 6,
      memSlotsMiB: 22_976,
    });
    expect(schedulable({ cores: 2, memMiB: 4000 }, { cpuOvercommit: 1, memReserveMiB: 1000, memOvercommit: 1.5 })).to.deep.equal({
      cpuSlots: 2,
      memSlotsMiB: 4500,
    });
    expect(schedulable({ cores: 2, memMiB: 512 }, { cpuOvercommit: 1, memReserveMiB: 1024, memOvercommit: 1 }).memSlotsMiB).to.equal(0);
  });

  it('charges up to the capacity, refuses the next taking nothing, and gives back by owner', () => {
    let capacity = 1000;
    const book = new MemoryBook(() => capacity);
    book.take('a', 600);
    book.take('b', 400);
    expect(book.free).to.equal(0);
    expect(() => book.take('c', 1)).to.throw(MemoryExhausted, /1 MiB requested, 0 of 1000 MiB/);
    expect(book.usage()).to.deep.equal({ a: 600, b: 400 });
    book.take('a', 500); // a restart with a smaller limit replaces the charge
    expect(book.free).to.equal(100);
    expect(() => book.take('b', 501)).to.throw(MemoryExhausted); // b's own 400 counts as its own
    book.release('b');
    book.release('b'); // twice: harmless
    book.release('never');
    expect(book.used).to.equal(500);
    book.claim('adopted', 900); // a running kernel is charged even past the capacity
    expect(book.free).to.equal(0);
    capacity = 2000; // the reserve is live
    expect(book.free).to.equal(600);
  });

  it('refuses what the node could never hold as a non-retryable ParametersError naming its figures', () => {
    const node = { cores: [0, 1], memSlotsMiB: 3000, memReserveMiB: 1024 };
    const cases: Array<[Parameters<typeof checkPossible>[0], RegExp]> = [
      [{ cpuCount: 0, cpuSet: [], memMiB: 256 }, /cpu_set must name at least one core/],
      [{ cpuCount: 1, cpuSet: [7], memMiB: 256 }, /core\(s\) 7 this node does not have/],
      [{ cpuCount: 1000, cpuSet: null, memMiB: 256 }, /asks for 1000 cores/],
      [{ cpuCount: 1, cpuSet: null, memMiB: 16 * 1024 * 1024 }, /asks for 16777216 MiB/],
    ];
    for (const [req, why] of cases) {
      let err: unknown;
      try {
        checkPossible(req, node);
      } catch (e) {
        err = e;
      }
      expect(err, String(why)).to.be.instanceOf(ImpossibleRequestError).and.instanceOf(ParametersError);
      expect((err as Error).message)
        .to.match(why)
        .and.match(/2 cores \(0,1\) and 3000 MiB schedulable memory/);
      expect(isRetryable(err)).to.equal(false);
    }
    expect(() => checkPossible({ cpuCount: 2, cpuSet: [0, 1], memMiB: 3000 }, node)).to.not.throw();
    expect(isRetryable(new NoResourcesError('later'))).to.equal(true);
  });
});
