/**
 * The soak command: `npm run soak -- [--cycles N] [--frames N] [--seed N] [--setting key=value ...]`,
 * or the fault soak, `npm run soak -- --faults MINUTES [--seed N]` (tests/soak/faults.ts).
 * Defaults: 1000 cycles and 100 000 frames. `--setting` puts a cluster
 * setting in etcd before the agent starts (for the warm pool:
 * `--setting 'pool/types=[{"name":"small","cpu":1,"memory":256}]'
 * --setting 'pool/images={"python:3-debian":{"small":2}}'`). Exits 1 when a leftover, a leak bound or a lost reply is found.
 */
import { requireEtcd, runCleanups } from '../helpers/env.js';
import { faultSoak } from './faults.js';
import { soak } from './soak.js';
import { faultProblems, soakProblems } from './verdict.js';

function parse(argv: string[]): { cycles: number; frames: number; seed: number; faults: number; settings: Record<string, string> } {
  const out = { cycles: 1000, frames: 100_000, seed: 1, faults: 0, settings: {} as Record<string, string> };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--cycles' || flag === '--frames' || flag === '--seed') {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} must be a whole number, got ${value}`);
      out[flag.slice(2) as 'cycles' | 'frames' | 'seed'] = n;
    } else if (flag === '--faults') {
      const minutes = Number(value);
      if (!(minutes > 0)) throw new Error(`--faults wants the minutes to run, more than 0, got ${value}`);
      out.faults = minutes;
    } else if (flag === '--setting') {
      const eq = value.indexOf('=');
      if (eq < 1) throw new Error(`--setting wants key=value, got ${value}`);
      out.settings[value.slice(0, eq)] = value.slice(eq + 1);
    } else {
      throw new Error(`unknown flag ${flag}; use --cycles, --frames, --seed, --setting key=value or --faults MINUTES`);
    }
  }
  return out;
}

async function main(): Promise<number> {
  const args = parse(process.argv.slice(2));
  await requireEtcd();
  const say = (line: string) => console.log(`[${new Date().toISOString()}] ${line}`);
  if (args.faults) return faults(args.faults, args.seed, say);
  say(`soak: ${args.cycles} cycles, ${args.frames} frames, settings ${JSON.stringify(args.settings)}`);
  try {
    const report = await soak({ ...args, progress: say });
    console.log(JSON.stringify(report, null, 2));
    const problems = soakProblems(report);
    for (const p of problems) say(`PROBLEM: ${p}`);
    say(problems.length ? 'soak FAILED' : 'soak passed');
    return problems.length ? 1 : 0;
  } finally {
    await runCleanups();
  }
}

/** The fault soak: its report as JSON, then its problems; 1 when there are any. */
async function faults(minutes: number, seed: number, say: (line: string) => void): Promise<number> {
  try {
    const report = await faultSoak({ seconds: minutes * 60, seed, progress: say });
    console.log(JSON.stringify(report, null, 2));
    const problems = faultProblems(report);
    for (const p of problems) say(`PROBLEM: ${p}`);
    say(problems.length ? `fault soak FAILED (replay: npm run soak -- --faults ${minutes} --seed ${seed})` : 'fault soak passed');
    return problems.length ? 1 : 0;
  } finally {
    await runCleanups();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`soak: error: ${err instanceof Error ? err.message : String(err)}`);
    void runCleanups().finally(() => process.exit(1));
  },
);
