/**
 * The fleet-sim command: `npm run fleet-sim -- [--agents 10,100,500] [--measure S] [--heartbeat S] [--ttl S]`.
 * Starts a three-member etcd cluster of its own on loopback, runs the
 * simulation (tests/fleet/sim.ts) once per agent count, prints a JSON
 * report per count, and removes everything at the end, on failure and on Ctrl-C.
 */
import { runCleanups, uniqueName } from '../helpers/env.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';
import { simulate } from './sim.js';

function parse(argv: string[]): { agents: number[]; measure: number; heartbeat: number; ttl: number } {
  const out = { agents: [10, 100, 500], measure: 10, heartbeat: 3, ttl: 15 };
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i]!.replace(/^--/, '');
    const v = argv[i + 1] ?? '';
    if (flag === 'agents') out.agents = v.split(',').map(Number);
    else if (flag === 'measure' || flag === 'heartbeat' || flag === 'ttl') out[flag] = Number(v);
    else throw new Error(`unknown flag ${argv[i]}; use --agents N[,N...], --measure S, --heartbeat S or --ttl S`);
  }
  if (out.agents.some((n) => !Number.isInteger(n) || n < 1 || n > 5000) || ![out.measure, out.heartbeat, out.ttl].every((n) => n > 0)) {
    throw new Error('--agents wants whole numbers from 1 to 5000; --measure, --heartbeat and --ttl positive seconds');
  }
  return out;
}

let code = 0;
process.on('SIGINT', () => void runCleanups().then(() => process.exit(130)));
try {
  const args = parse(process.argv.slice(2));
  const say = (line: string) => console.error(`[${new Date().toISOString()}] ${line}`);
  const cluster = await etcdCluster(3, { metrics: 'extensive' });
  const metricsUrls = cluster.members.map((m) => `http://127.0.0.1:${m.client}/metrics`);
  for (const n of args.agents) {
    say(`fleet-sim: ${n} agents`);
    const report = await simulate({
      agents: n,
      etcdAddr: cluster.addr,
      metricsUrls,
      namespace: uniqueName('sim'),
      heartbeatSec: args.heartbeat,
      leaseTtlSec: args.ttl,
      measureSec: args.measure,
      progress: say,
    });
    console.log(JSON.stringify(report));
  }
} catch (err) {
  console.error(`fleet-sim: ${err instanceof Error ? err.message : String(err)}`);
  code = 1;
} finally {
  await runCleanups();
}
process.exit(code);
