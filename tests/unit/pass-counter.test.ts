import { expect } from 'chai';
import { PassCounter } from '../../src/util/pass-counter.js';

describe('pass counter', () => {
  it('wakes a wait after the number of passes asked for, counting from when it was asked; every wait at close, later ones at once', async () => {
    const c = new PassCounter();
    c.passed();
    const woke: string[] = [];
    void c.after(2).then(() => woke.push('two'));
    void c.after(1).then(() => woke.push('one'));
    const flush = () => new Promise((r) => setImmediate(r));
    c.passed();
    await flush();
    expect(woke).to.deep.equal(['one']);
    c.passed();
    await flush();
    expect(woke).to.deep.equal(['one', 'two']);
    expect(c.count).to.equal(3);
    void c.after(5).then(() => woke.push('closed'));
    c.close();
    await c.after(1);
    await flush();
    expect(woke).to.deep.equal(['one', 'two', 'closed']);
  });
});
