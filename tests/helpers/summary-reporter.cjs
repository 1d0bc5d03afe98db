// The spec reporter, plus one plain closing line "N passed, N failed, N skipped"
// that tools reading test output recognise whatever the runner. With
// TEST_TIMES=<file>, it also writes every test's duration (and each file's
// wall time, when files run one after another) there as JSON, for planning
// the suite's time (docs/development.rst); with TEST_SUMMARY=<file>, it
// appends its counts ("passed failed skipped") there.
'use strict';
const fs = require('node:fs');
const Mocha = require('mocha');

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    // a run in parts (tests/run-suite.sh) writes one file per part: times.json -> times-parallel.json, times-alone.json
    const part = process.env.TEST_PART;
    const timesFile = process.env.TEST_TIMES && part ? process.env.TEST_TIMES.replace(/(\.json)?$/, `-${part}$1`) : process.env.TEST_TIMES;
    const tests = [];
    const files = {};
    const started = Date.now();
    if (timesFile) {
      runner.on('suite', (suite) => {
        if (suite.file && !files[suite.file]) files[suite.file] = { start: Date.now(), ms: 0 };
      });
      runner.on('suite end', (suite) => {
        if (suite.file && files[suite.file]) files[suite.file].ms = Date.now() - files[suite.file].start;
      });
      runner.on('test end', (test) => {
        tests.push({ file: test.file, title: test.fullTitle(), ms: test.duration ?? 0, state: test.state ?? 'pending' });
      });
    }
    runner.once('end', () => {
      const s = runner.stats;
      if (timesFile) {
        const wall = Object.entries(files)
          .map(([file, f]) => ({ file, ms: f.ms }))
          .sort((a, b) => b.ms - a.ms);
        fs.writeFileSync(timesFile, JSON.stringify({ totalMs: Date.now() - started, files: wall, tests }, null, 1));
      }
      // a run in parts (deploy/dev/test.sh) adds up the parts' counts from this file
      if (process.env.TEST_SUMMARY) fs.appendFileSync(process.env.TEST_SUMMARY, `${s.passes} ${s.failures} ${s.pending}\n`);
      process.stdout.write(`\ntests: ${s.passes} passed, ${s.failures} failed, ${s.pending} skipped\n`);
    });
  }
}
module.exports = SummaryReporter;
