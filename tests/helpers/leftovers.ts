/** The check, after a create that failed, that it left nothing behind: no container, no scratch home, no cores. */
import { readdirSync } from 'node:fs';
import { expect } from 'chai';
import { containersOf, coresHeld, type TestAgent } from './env.js';

/**
 * homesIn lists the kernel homes in a scratch root: every entry but the
 * agent's own dot-named records (the pool's, the image use book) and
 * lost+found, which the file system of a scratch disk has.
 */
export function homesIn(scratchRoot: string): string[] {
  return readdirSync(scratchRoot).filter((n) => !n.startsWith('.') && n !== 'lost+found');
}

export async function expectNothingLeft(a: TestAgent): Promise<void> {
  expect(await containersOf(a.agentId)).to.have.length(0);
  expect(homesIn(a.agent.options.scratchRoot)).to.deep.equal([]);
  expect(await coresHeld(a.client)).to.equal(0);
}
