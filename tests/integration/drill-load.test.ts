/**
 * Load drill: 8 kernels on this 2-core node in the suite, 20 in `npm run
 * drills` (DRILL_LOAD_KERNELS; cpu_overcommit 16, 256 MiB each), and 200
 * concurrent execute runs spread over them, each printing a token of its
 * own: every run is answered with its own token and nothing else, so no
 * output is lost or crossed between runs or kernels.
 */
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { containersOf, requireEtcd, startAgent, uniqueName } from '../helpers/env.js';
import { runCode, SMALL_KERNEL } from '../soak/drive.js';

const KERNELS = Number(process.env.DRILL_LOAD_KERNELS) || 8;
const RUNS_PER_KERNEL = Math.ceil(200 / KERNELS);

describe('drill: load', function () {
  this.timeout(600_000);
  before(requireEtcd);

  it(`answers ${KERNELS * RUNS_PER_KERNEL} concurrent execute calls over ${KERNELS} kernels, each with its own output only`, async () => {
    const { client, agentId } = await startAgent({}, async (ns) => {
      await ns.put('config/agent/cpu_overcommit').value('16');
    });
    const ids = Array.from({ length: KERNELS }, (_, i) => uniqueName(`load${i}`));
    await Promise.all(ids.map((id) => client.callWithTimeout(300_000, methods.create_kernel, id, SMALL_KERNEL)));
    expect(await containersOf(agentId)).to.have.length(KERNELS);

    const calls = ids.flatMap((id) =>
      Array.from({ length: RUNS_PER_KERNEL }, (_, n) => {
        const token = `${id}/${n}`;
        // the sleep makes runs of one kernel overlap in the queue, and runs of different kernels interleave
        return runCode(client, id, `import time; time.sleep(0.05); print(${JSON.stringify(token)})`).then((out) => ({ token, out }));
      }),
    );
    const results = await Promise.allSettled(calls);
    const failed = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
    expect(failed, 'calls that failed').to.deep.equal([]);
    const crossed = results
      .map((r) => (r as PromiseFulfilledResult<{ token: string; out: string }>).value)
      .filter(({ token, out }) => out !== `${token}\n`);
    expect(crossed, 'runs whose output was not exactly their own token').to.deep.equal([]);

    await Promise.all(ids.map((id) => client.callWithTimeout(120_000, methods.destroy_kernel, id)));
    expect(await containersOf(agentId)).to.have.length(0);
  });
});
