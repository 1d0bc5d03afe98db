/** The named fault points (src/util/faults.ts): inert unless armed, `throw` throws at its point only, a typo is refused. */
import { expect } from 'chai';
import { FAULT_POINTS, faultPoint } from '../../src/util/faults.js';

describe('fault points', () => {
  const saved = process.env.AGENT_FAULTS;
  afterEach(() => {
    if (saved === undefined) delete process.env.AGENT_FAULTS;
    else process.env.AGENT_FAULTS = saved;
  });

  it('do nothing unless AGENT_FAULTS arms them', async () => {
    delete process.env.AGENT_FAULTS;
    for (const p of FAULT_POINTS) await faultPoint(p);
  });

  it('throw at the armed point only', async () => {
    process.env.AGENT_FAULTS = 'restart.after-new-ready=throw';
    await faultPoint('restart.after-new-created');
    const err = await faultPoint('restart.after-new-ready').then(
      () => null,
      (e: unknown) => e,
    );
    expect(String(err)).to.match(/fault point restart\.after-new-ready armed/);
  });

  it('refuse an unknown point or action, naming the known ones', async () => {
    for (const bad of ['restart.after-new-redy=kill', 'restart.after-new-ready=explode']) {
      process.env.AGENT_FAULTS = bad;
      const err = await faultPoint('create.after-home-made').then(
        () => null,
        (e: unknown) => e,
      );
      expect(String(err)).to.include(`"${bad}" is not <point>=kill|throw`).and.include('destroy.after-container-removed');
    }
  });
});
