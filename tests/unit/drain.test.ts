/** The forms of a node's drain key (src/services/drain.ts, docs/agentctl.rst "Draining a node"). */
import { expect } from 'chai';
import { parseDrainValue } from '../../src/services/drain.js';

describe('drain key values', () => {
  const now = 1_700_000_000;

  it('reads the JSON that drain writes, with or without a deadline', () => {
    expect(parseDrainValue('{"since": 10, "deadline": 70}', now)).to.deep.equal({ state: { since: 10, deadline: 70 }, bad: null });
    expect(parseDrainValue('{"since": 10, "deadline": null}', now)).to.deep.equal({ state: { since: 10, deadline: null }, bad: null });
    expect(parseDrainValue('{"deadline": 99}', now)).to.deep.equal({ state: { since: now, deadline: 99 }, bad: null });
  });

  it('reads a bare number as seconds from now, and an empty value or true as a drain without deadline', () => {
    expect(parseDrainValue(' 600 ', now)).to.deep.equal({ state: { since: now, deadline: now + 600 }, bad: null });
    expect(parseDrainValue('2.5', now).state.deadline).to.equal(now + 2.5);
    for (const v of ['', 'true']) expect(parseDrainValue(v, now)).to.deep.equal({ state: { since: now, deadline: null }, bad: null });
  });

  it('drains without deadline on any other value, and says what the forms are', () => {
    for (const v of ['soon', '-5', '[1,2]', '{"deadline": "x"}', '{"deadline": 1e999}', 'null', '{']) {
      const r = parseDrainValue(v, now);
      expect(r.state, v).to.deep.equal({ since: now, deadline: null });
      expect(r.bad, v).to.match(/expected \{"since"/);
    }
  });
});
