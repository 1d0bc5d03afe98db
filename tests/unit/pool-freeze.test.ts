/** The pool's memory charges (src/pool/charges.ts) and its freezer (src/pool/freeze.ts), without Docker. */
import { expect } from 'chai';
import { MemoryBook } from '../../src/node/memory.js';
import { silentLogger, type Logger } from '../../src/log.js';
import { PoolCharges } from '../../src/pool/charges.js';
import { PoolFreezer } from '../../src/pool/freeze.js';
import type { PooledContainer } from '../../src/pool/types.js';

/** A logger that counts its warnings. */
function counting(): Logger & { warnings: string[] } {
  const base = silentLogger();
  const warnings: string[] = [];
  return Object.assign(Object.create(base) as Logger, { warnings, warn: (m: string) => void warnings.push(m), child: () => base });
}

const pooled = (id: string, frozen = false) =>
  ({ containerId: id.padEnd(12, '0'), key: 'py/small', frozen, checking: false }) as unknown as PooledContainer;

describe('pool memory charges', () => {
  it('charges fills up to the capacity, moves a claimed charge to its kernel without counting it twice, and gives back', () => {
    const book = new MemoryBook(() => 600);
    const log = counting();
    const charges = new PoolCharges(() => book, log);
    expect(charges.take('a', 256)).to.equal(true);
    expect(charges.take('b', 256)).to.equal(true);
    expect(charges.room(256)).to.equal(0);
    expect(charges.take('c', 256)).to.equal(false);
    expect(book.used).to.equal(512);
    charges.note('py/small', 2, 0, 256);
    charges.note('py/small', 2, 0, 256);
    charges.note('py/small', 0, 0, 256); // no place to fill this pass: no news
    charges.note('py/small', 2, 0, 256);
    expect(log.warnings).to.have.length(1);
    charges.note('py/small', 1, 1, 256); // room again: the next stop is said again
    charges.note('py/small', 2, 0, 256);
    expect(log.warnings).to.have.length(2);

    expect(charges.transfer('a', 'kernel-1', 128)).to.equal(true);
    expect(book.usage()).to.deep.equal({ 'pool:b': 256, 'kernel-1': 128 });
    expect(charges.transfer('b', 'kernel-2', 500)).to.equal(false); // more than it held, and the rest does not fit
    expect(book.usage()).to.deep.equal({ 'pool:b': 256, 'kernel-1': 128 });
    charges.release('b');
    charges.release('b');
    expect(book.used).to.equal(128);
    charges.adopt('d', 900); // found running at start: charged even past the capacity
    expect(book.free).to.equal(0);
  });
});

describe('pool freezer', () => {
  it('pauses only with pool/freeze on, unpauses for a claim, and gives up a container that cannot be unpaused', async () => {
    let on = false;
    const calls: string[] = [];
    const failing = new Set<string>();
    const docker = {
      async setPaused(id: string, paused: boolean) {
        calls.push(`${paused ? 'pause' : 'unpause'} ${id.slice(0, 1)}`);
        if (failing.has(id)) throw new Error('docker said no');
      },
    };
    const log = counting();
    const freezer = new PoolFreezer(docker, log, () => on);
    const a = pooled('a');
    await freezer.freeze(a);
    expect(a.frozen).to.equal(false);
    on = true;
    await freezer.freeze(a);
    await freezer.freeze(a); // already frozen: no second pause
    expect(a.frozen).to.equal(true);
    await freezer.thaw(a);
    expect(a.frozen).to.equal(false);
    expect(calls).to.deep.equal(['pause a', 'unpause a']);

    const b = pooled('b', true);
    failing.add(b.containerId);
    let err: unknown = null;
    await freezer.thaw(b).catch((e: unknown) => (err = e));
    expect(String(err)).to.match(/docker said no/);
    expect(b.frozen).to.equal(true); // never handed out as running
    const c = pooled('c');
    failing.add(c.containerId);
    await freezer.freeze(c); // a failed pause leaves it running, said once
    expect(c.frozen).to.equal(false);
    expect(log.warnings).to.have.length(1);

    // the setting turned off: the frozen ones are unpaused; one that cannot be is given up
    on = false;
    const d = pooled('d', true);
    const gone: string[] = [];
    await freezer.settle([a, b, d], async (x, why) => void gone.push(`${x.containerId.slice(0, 1)}: ${why}`));
    expect(d.frozen).to.equal(false);
    expect(gone).to.deep.equal(['b: it could not be unpaused (docker said no)']);
    expect([a, b, d].map((x) => x.frozen)).to.deep.equal([false, true, false]);
  });
});
