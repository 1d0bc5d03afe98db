/**
 * Mocha root hooks: every test's cleanups run after it, even when it fails.
 */
import { runCleanups } from './env.js';

export const mochaHooks = {
  async afterEach() {
    await runCleanups();
  },
};
