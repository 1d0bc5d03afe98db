/** The check, after a create that failed, that it left nothing behind: no container, no scratch home, no cores. */
import { readdirSync } from 'node:fs';
import { expect } from 'chai';
import { containersOf, coresHeld, type TestAgent } from './env.js';

export async function expectNothingLeft(a: TestAgent): Promise<void> {
  expect(await containersOf(a.agentId)).to.have.length(0);
  expect(readdirSync(a.agent.options.scratchRoot).filter((n) => !n.startsWith('.'))).to.deep.equal([]);
  expect(await coresHeld(a.client)).to.equal(0);
}
