/**
 * The short form of the soak (`npm run soak` runs the long one): cycles of
 * create/execute/destroy and a flood of malformed frames against an agent run
 * as a child, held to the bounds of tests/soak/verdict.ts.
 */
import { expect } from 'chai';
import { requireEtcd, TEST_IMAGE_LANG } from '../helpers/env.js';
import { soak } from '../soak/soak.js';
import { soakProblems } from '../soak/verdict.js';

/** A warm pool of two containers of the type every soak cycle asks for (1 core, 256 MiB). */
const POOL = {
  'pool/types': JSON.stringify([{ name: 'small', cpu: 1, memory: 256 }]),
  'pool/images': JSON.stringify({ [TEST_IMAGE_LANG]: { small: 2 } }),
};

/** The suite's short form; `npm run drills` runs 30 and 20 (SOAK_CYCLES, SOAK_POOL_CYCLES) and 100 000 frames (FLOOD_FRAMES). */
const CYCLES = Number(process.env.SOAK_CYCLES) || 4;
const POOL_CYCLES = Number(process.env.SOAK_POOL_CYCLES) || 3;
const FRAMES = Number(process.env.FLOOD_FRAMES) || 6_000;

describe('soak (short form)', function () {
  this.timeout(600_000);
  before(requireEtcd);

  it(`leaves no container, dir, core or port after ${CYCLES} create/execute/destroy cycles, with RSS and fds flat`, async () => {
    const report = await soak({ cycles: CYCLES, frames: 0 });
    expect(soakProblems(report)).to.deep.equal([]);
    expect(report.figures.map((f) => f.at)).to.deep.equal(['start', 'middle', 'end of cycles']);
  });

  it('with the warm pool on: claims leave nothing but the pool itself, with RSS and fds flat', async () => {
    const cycles = POOL_CYCLES;
    const report = await soak({ cycles, frames: 0, settings: POOL });
    expect(soakProblems(report)).to.deep.equal([]);
    expect(report.pooledIdle, 'the pool is full again').to.equal(2);
    expect(report.warmStarts, 'kernels claimed from the pool').to.be.greaterThan(cycles / 2);
  });

  it(`answers every request with a parseable header exactly once in a flood of ${FRAMES} malformed and random frame sets`, async () => {
    const report = await soak({ cycles: 0, frames: FRAMES, seed: Date.now() % 1000 });
    expect(soakProblems(report)).to.deep.equal([]);
    expect(report.flood!.expected).to.be.greaterThan(FRAMES / 4); // the flood did send answerable requests (about half)
    expect(report.pingAfter).to.equal(true);
  });
});
