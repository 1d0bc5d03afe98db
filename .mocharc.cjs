// Mocha's settings. `npx mocha` runs the whole suite in one process, file
// after file. deploy/dev/test.sh (CI) runs it in two parts, chosen by
// TEST_PART: `parallel`, every file but those of ALONE, four files at a time
// (mocha's parallel mode, one worker process per file), then `alone`, the
// files of ALONE one after another with nothing beside them. TEST_PART=drills
// is `npm run drills`: the long drills, whose long forms that command asks
// for through environment variables (docs/development.rst, Tests).
'use strict';

/** Files that must have the machine to themselves: they restart the shared dockerd. */
const ALONE = ['dist/tests/integration/dockerd-restart.test.js'];

/**
 * Files of the long drills that run in `npm run drills` only: the etcd outage (the suite's etcd outages are
 * node-stats.test's and etcd-faults.test's), to keep the suite under its 12 minutes.
 */
const DRILLS_ONLY = ['dist/tests/integration/drill-etcd.test.js'];

/** The files of the long drills (their short forms are in the suite, but for DRILLS_ONLY). */
const DRILLS = [
  'dist/tests/integration/bench.test.js',
  'dist/tests/integration/drill-etcd.test.js',
  'dist/tests/integration/drill-load.test.js',
  'dist/tests/integration/kernels.test.js',
  'dist/tests/integration/run-integrity.test.js',
  'dist/tests/integration/soak.test.js',
  'dist/tests/integration/soak-faults.test.js',
  'dist/tests/fuzz/wire.test.js',
];

/**
 * The longest files of the parallel part (about a minute or more each), started first: mocha hands files to its
 * workers in spec order, so a long file started last would run on alone at the end.
 */
const LONGEST = [
  'dist/tests/integration/bench.test.js',
  'dist/tests/integration/run-integrity.test.js',
  'dist/tests/integration/kernels.test.js',
  'dist/tests/integration/soak-faults.test.js',
  'dist/tests/integration/soak.test.js',
  'dist/tests/integration/pool.test.js',
  'dist/tests/security/session-overlay.test.js',
];

const ALL = ['dist/tests/**/*.test.js'];

/** Every test file of the parallel part (none of ALONE or DRILLS_ONLY), the longest first, then the rest in path order. */
function parallelFiles() {
  const fs = require('node:fs');
  const found = fs
    .readdirSync('dist/tests', { recursive: true })
    .map((f) => `dist/tests/${f}`)
    .filter((f) => f.endsWith('.test.js') && !ALONE.includes(f) && !DRILLS_ONLY.includes(f))
    .sort();
  return [...LONGEST.filter((f) => found.includes(f)), ...found.filter((f) => !LONGEST.includes(f))];
}

const part = process.env.TEST_PART ?? '';
const parts = {
  '': { spec: ALL },
  parallel: { spec: part === 'parallel' ? parallelFiles() : [], parallel: true, jobs: Number(process.env.TEST_JOBS) || 4 },
  alone: { spec: ALONE },
  drills: { spec: DRILLS },
};
if (!(part in parts))
  throw new Error(
    `TEST_PART=${part} is not one of ${Object.keys(parts).filter(Boolean).join(', ')} (or unset: the whole suite in one process)`,
  );

module.exports = {
  ...parts[part],
  timeout: 20000,
  'node-option': ['enable-source-maps'],
  reporter: 'tests/helpers/summary-reporter.cjs',
  exit: true,
  require: ['dist/tests/helpers/hooks.js'],
};
