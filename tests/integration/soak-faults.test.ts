/**
 * The fault soak's suite form (`npm run soak -- --faults MINUTES` runs it
 * longer; docs/development.rst): 15 s of runs and uploads on two kernels of
 * an agent run as the real CLI while it is SIGKILLed and SIGTERMed, its
 * host ports are held, a home is filled, a kernel is restarted and a third
 * made and destroyed, the agent killed under some of them, with a fixed
 * seed (and on past the 15 s until every kind of fault was made once);
 * every run's console is what its code printed, every file is whole,
 * no kernel or home goes, nothing is left.
 */
import { expect } from 'chai';
import { requireEtcd } from '../helpers/env.js';
import { faultSoak } from '../soak/faults.js';
import { faultProblems } from '../soak/verdict.js';

/** SOAK_FAULT_SECONDS and SOAK_FAULT_SEED change them (a failure prints the seed to replay). */
const SECONDS = Number(process.env.SOAK_FAULT_SECONDS) || 15;
const SEED = Number(process.env.SOAK_FAULT_SEED) || 28;

describe('fault soak (short form)', function () {
  this.timeout(300_000);
  before(requireEtcd);

  it(`loses no output, file or home through ${SECONDS} s of agent kills and stops, held ports, full homes, restarts and kills under creates, restarts and destroys (seed ${SEED})`, async () => {
    const report = await faultSoak({ seconds: SECONDS, seed: SEED });
    expect(faultProblems(report), JSON.stringify(report, null, 2)).to.deep.equal([]);
    expect(report.expected).to.include.keys(
      'restart_kernel with no free host port: agent.InsufficientResources',
      'create_kernel with no free host port: agent.InsufficientResources',
      'upload to a full home: agent.NoSpace',
    );
    expect(report.runs.resumed, 'runs taken up with continue after an agent death').to.be.greaterThan(0);
  });
});
