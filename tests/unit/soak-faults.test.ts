/**
 * The fault soak's own parts (tests/soak/fault-runs.ts): each program's
 * output, which the soak holds every run to, is what Python really prints
 * for its code; and the check of a run finds a lost, a repeated and a
 * changed line and a bad end.
 */
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { asks, free, FILLER, quick, runProblems, sha256, slow, verify, type Program, type RunOutcome } from '../soak/fault-runs.js';

/** Runs a program's code with the machine's Python in `cwd`, its input on stdin; what it wrote to each stream. */
function python(p: Program, cwd: string): { stdout: string; stderr: string } {
  const r = spawnSync('/usr/bin/python3', ['-c', p.code], { cwd, input: p.input ? `${p.input.text}\n` : '', encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${p.kind} exited ${r.status}: ${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

const outcome = (p: Program, o: Partial<RunOutcome> = {}): RunOutcome => ({
  runId: 'r1',
  status: 'finished',
  exitCode: 0,
  stdout: p.stdout,
  stderr: p.stderr,
  requeried: 0,
  resumed: 0,
  ...o,
});

describe('fault soak programs and run checks', () => {
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'soak-programs-'));
  });
  after(() => fs.rm(dir, { recursive: true, force: true }));

  it('each program prints exactly the output the soak expects of it', async () => {
    await fs.writeFile(path.join(dir, 'a.bin'), 'alpha');
    await fs.writeFile(path.join(dir, FILLER), 'f');
    const programs = [
      quick('t1', 120),
      slow('t2', 7, 1),
      asks('t3', false, 0),
      verify('t4', new Map([['a.bin', sha256(Buffer.from('alpha'))]])),
      free('t5'),
    ];
    for (const p of programs) {
      if (p.kind === 'free') await fs.writeFile(path.join(dir, FILLER), 'f');
      expect(python(p, dir), p.kind).to.deep.equal({ stdout: p.stdout, stderr: p.stderr });
    }
    expect(quick('t', 2).stdout).to.equal('t 0 \nt 1 x\nt end\n');
    expect(slow('t', 4, 1).stderr).to.equal('t err 0\nt err 3\n');
  });

  it('a run is clean only with exactly its output and a finished exit code 0', () => {
    const p = slow('tok', 5, 1);
    expect(runProblems('k', p, outcome(p))).to.deep.equal([]);
    const lost = runProblems('k', p, outcome(p, { stdout: p.stdout.replace('tok 2\n', '') }));
    expect(lost).to.have.length(1);
    expect(lost[0]).to.match(
      /stdout is not what it printed \(5 lines, 6 printed; first difference at line 3: got "tok 3", printed "tok 2"\)/,
    );
    const repeated = runProblems('k', p, outcome(p, { stdout: p.stdout.replace('tok 2\n', 'tok 2\ntok 1\n') }));
    expect(repeated[0]).to.match(/at line 4: got "tok 1".*\(a line seen before: duplicated\)/);
    const cut = runProblems('k', p, outcome(p, { stderr: '', status: 'finished', exitCode: -1 }));
    expect(cut).to.have.length(2);
    expect(cut[0]).to.match(/ended finished with exit code -1/);
    expect(cut[1]).to.match(/stderr is not what it printed/);
  });
});
