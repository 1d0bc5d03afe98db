/**
 * The fault soak (`npm run soak -- --faults MINUTES [--seed N]`): two
 * kernels of an agent run as the real CLI are driven with runs whose output
 * is known from their code and uploads whose checksums are kept, while at
 * seeded moments the agent is SIGKILLed or SIGTERMed and started again
 * (same scratch root, id and port); the host port range is held by
 * listeners of the soak (a restart and a create must then fail retryably,
 * the kernel running on); a home is filled to its quota from inside its
 * kernel (an upload is then agent.NoSpace), the agent killed or the kernel
 * restarted while it is full, and freed; and a kernel is restarted, the
 * agent SIGKILLed under the restart half of the times. Every run's console
 * must be exactly what its code printed, every file must be there whole, no
 * home or kernel may go, and at the end nothing may be left
 * (tests/soak/verdict.ts). The suite runs 60 s of it
 * (tests/integration/soak-faults.test.ts); docs/development.rst says more.
 */
import { promises as fs, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { RemoteError } from '../../src/errors.js';
import { methods } from '../../src/rpc/methods.js';
import { containersOf, nextPortBlock, tempScratch, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { waitRealTime } from '../helpers/real-time.js';
import { cleanMountsUnder, mountsUnder } from '../helpers/scratch-mounts.js';
import { LABELS } from '../../src/adapters/labels.js';
import { childAgent, type ChildAgent } from './drive.js';
import { asks, driveRun, fill, free, Link, quick, runProblems, sha256, slow, verify, type Program } from './fault-runs.js';
import { hold, pause, randomBytesFrom, shuffled, type Pause } from './fault-kit.js';
import { prng } from './frames.js';
import { FAULTS, leftoversOf, type Fault, type FaultSoakReport } from './verdict.js';

/** Options of {@link faultSoak}. */
export interface FaultSoakOptions {
  /** How long the kernels are driven and the faults come, counted from the agent's first start. */
  seconds: number;
  /** Seeds the faults' order and moments, the runs' programs and the uploads' bytes: the same seed replays the same soak (its timing aside). */
  seed: number;
  progress?: (line: string) => void;
}

/** Each kernel of the soak: what it was given and what must still be there. */
interface SoakKernel {
  id: string;
  /** Uploaded files of its home: name to sha256. */
  files: Map<string, string>;
  /** While a fill holds its home full (its driver waiting), an upload must be agent.NoSpace. */
  full: boolean;
  rnd: () => number;
  runs: number;
  uploads: number;
  /** Set while a fault needs the kernel to itself: the driver stops at its next step until it is released. */
  pause: Pause | null;
}

const MiB = 1024 * 1024;
/** One core, 256 MiB, a 32 MiB hostfile home (scratch_size below), so that a fill is quick. */
const KERNEL = { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 256 }, mounts: [], environ: {} };
/** The kernels driven at once: with the create tried while the ports are held, 3 cores of 4 (cpu_overcommit 2 on this 2-core machine). */
const KERNELS = 2;
/** Host ports of the agent: the first 32 of a test port block (2 kernels take 8). */
const RANGE_SIZE = 32;

/** Runs the fault soak on a fresh child agent; the caller runs the clean-ups (the test hooks, or the command's finally). */
export async function faultSoak(o: FaultSoakOptions): Promise<FaultSoakReport> {
  const say = o.progress ?? (() => undefined);
  const rnd = prng(o.seed);
  const problems: string[] = [];
  const expected: Record<string, number> = {};
  const count = (what: string) => (expected[what] = (expected[what] ?? 0) + 1);
  const faults: Record<Fault, number> = { sigkill: 0, sigterm: 0, ports: 0, fill: 0, restart: 0, lifecycle: 0 };
  const runs: FaultSoakReport['runs'] = { total: 0, byKind: {}, resumed: 0, requeried: 0 };
  let uploads = 0;

  const scratch = await fs.realpath(await tempScratch());
  cleanMountsUnder(scratch);
  const block = nextPortBlock();
  const range = { lo: block.lo, hi: block.lo + RANGE_SIZE - 1 };
  const started = Date.now();
  const end = started + o.seconds * 1000;
  let agent: ChildAgent = await childAgent({
    scratch,
    settings: {
      container_port_range: `${range.lo}-${range.hi}`,
      port_reuse_cooldown: '0',
      scratch_type: 'hostfile',
      scratch_size: '32',
      cpu_overcommit: '2', // the kernels and the create tried while the ports are held, on a 2-core machine
      runner_ready_timeout: '30', // a loaded machine
    },
  });
  let agentStarts = 1;
  const link = new Link(agent.client);
  say(`fault soak: seed ${o.seed}, ${o.seconds} s, agent ${agent.agentId}, ports ${range.lo}-${range.hi}, scratch ${scratch}`);

  const kernels: SoakKernel[] = [];
  for (let i = 0; i < KERNELS; i++) {
    const id = uniqueName(`soak${i}`);
    await agent.client.callWithTimeout(120_000, methods.create_kernel, id, KERNEL);
    const k: SoakKernel = { id, files: new Map(), full: false, rnd: prng(o.seed * 31 + i + 1), runs: 0, uploads: 0, pause: null };
    kernels.push(k);
    await upload(k, 'marker.txt', Buffer.from(`home of ${id}\n`));
  }

  async function upload(k: SoakKernel, name: string, bytes: Buffer): Promise<void> {
    const wasFull = k.full;
    try {
      await link.retried((c) => c.callWithTimeout(60_000, methods.upload_file, k.id, name, bytes));
      k.files.set(name, sha256(bytes));
      uploads++;
    } catch (err) {
      if ((wasFull || k.full) && err instanceof RemoteError && err.remoteType === 'agent.NoSpace') {
        count('upload to a full home: agent.NoSpace');
        if (existsSync(path.join(scratch, k.id, name)))
          problems.push(`the upload of ${name} to ${k.id} failed with NoSpace but left the file`);
      } else problems.push(`upload of ${name} (${bytes.length} bytes) to ${k.id} failed: ${String(err)}`);
    }
  }

  async function run(k: SoakKernel, p: Program): Promise<void> {
    const runId = `${k.id}-r${++k.runs}`;
    try {
      const out = await driveRun(link, k.id, runId, p);
      problems.push(...runProblems(k.id, p, out));
      runs.total++;
      runs.byKind[p.kind] = (runs.byKind[p.kind] ?? 0) + 1;
      runs.resumed += out.resumed;
      runs.requeried += out.requeried;
      if (runs.total % 25 === 0) say(`${runs.total} runs, ${uploads} uploads, faults ${JSON.stringify(faults)}`);
    } catch (err) {
      problems.push(`run ${runId} (${p.kind}) on ${k.id} failed: ${String(err)}`);
    }
  }

  /**
   * The homes as the host sees them: each there with every uploaded file
   * whole; the agent lists every kernel, one container each (and at most one
   * for a kernel of `maybe`, whose create or destroy a death cut).
   */
  async function checkHomes(when: string, maybe: string[] = []): Promise<void> {
    const listed = (await link.retried((c) => c.call(methods.list_kernels))).map((x) => x.id);
    const all = await containersOf(agent.agentId);
    const containers = all.filter((c) => !maybe.includes(c.Labels[LABELS.kernel]!));
    if (all.length - containers.length > maybe.length)
      problems.push(`${when}: ${all.length - containers.length} containers for the kernel(s) ${maybe.join(', ')}`);
    if (containers.length !== kernels.length)
      problems.push(
        `${when}: ${containers.length} containers for ${kernels.length} kernels (${containers.map((c) => `${c.Names[0]} ${c.State}`).join(', ')})`,
      );
    for (const k of kernels) {
      if (!listed.includes(k.id)) problems.push(`${when}: the agent does not list kernel ${k.id}`);
      for (const [name, sum] of k.files) {
        const got = await fs.readFile(path.join(scratch, k.id, name)).then(sha256, (err: unknown) => `unreadable (${String(err)})`);
        if (got !== sum) problems.push(`${when}: ${k.id}/${name} is ${got}, uploaded ${sum}`);
      }
    }
  }

  // The drivers: each kernel gets runs (some two at once, queued), uploads and checks of its files until the end.
  let stopping = false;
  async function driver(k: SoakKernel): Promise<void> {
    while (!stopping) {
      if (k.pause) {
        k.pause.stopped();
        await k.pause.released;
        continue;
      }
      const r = k.rnd();
      const tok = `${k.id}-${k.runs + 1}`;
      if (r < 0.15) await upload(k, `up-${++k.uploads}.bin`, randomBytesFrom(k.rnd, 1 + Math.floor(k.rnd() * 256 * 1024)));
      else if (r < 0.25) await run(k, verify(tok, k.files));
      else if (r < 0.4)
        await Promise.all([run(k, slow(tok, 5 + Math.floor(k.rnd() * 20), 100)), run(k, quick(`${tok}q`, 1 + Math.floor(k.rnd() * 500)))]);
      else if (r < 0.55) await run(k, asks(tok, k.rnd() < 0.5, Math.floor(k.rnd() * 1500)));
      else if (r < 0.8) await run(k, slow(tok, 5 + Math.floor(k.rnd() * 25), 50 + Math.floor(k.rnd() * 250)));
      else await run(k, quick(tok, 1 + Math.floor(k.rnd() * 3000)));
    }
  }
  const drivers = kernels.map(driver);

  async function restartAgent(signal: 'SIGKILL' | 'SIGTERM', when = `after ${signal}`, maybe: string[] = []): Promise<void> {
    link.goingDown();
    agent.proc.child.kill(signal);
    const code = await agent.proc.exited;
    if (signal === 'SIGTERM' && code !== 0) problems.push(`the agent's stop on SIGTERM exited ${code}`);
    agent = await childAgent(agent.options);
    agentStarts++;
    link.up(agent.client);
    await checkHomes(when, maybe);
  }

  /** Holds every free port of the range: a restart and a create must fail retryably, the kernels running on. */
  async function exhaustPorts(): Promise<void> {
    const taken = new Set((await containersOf(agent.agentId)).flatMap((c) => c.Ports.map((p) => p.PublicPort)));
    const held: net.Server[] = [];
    for (let p = range.lo; p <= range.hi; p++) if (!taken.has(p)) held.push(...(await hold(p)));
    try {
      const k = kernels[Math.floor(rnd() * kernels.length)]!;
      await expectShort(`restart_kernel of ${k.id}`, /the kernel runs on as it was/, async () => {
        await agent.client.callWithTimeout(120_000, methods.restart_kernel, k.id, KERNEL);
      });
      const extra = uniqueName('soak-extra');
      await expectShort(`create_kernel of ${extra}`, /host ports/, async () => {
        await agent.client.callWithTimeout(120_000, methods.create_kernel, extra, KERNEL);
        await agent.client.callWithTimeout(120_000, methods.destroy_kernel, extra);
      });
      await waitRealTime(1000 + rnd() * 3000, 'the runs go on while the ports are held');
    } finally {
      await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
    }
  }

  async function expectShort(what: string, message: RegExp, call: () => Promise<void>): Promise<void> {
    try {
      await call();
      problems.push(`${what} went through with every free host port held`);
    } catch (err) {
      if (err instanceof RemoteError && err.remoteType === 'agent.InsufficientResources' && err.retryable && message.test(err.message))
        count(`${what.split(' ')[0]} with no free host port: agent.InsufficientResources`);
      else problems.push(`${what} with every free host port held failed otherwise: ${String(err)}`);
    }
  }

  /**
   * Fills a home from inside its kernel and finds an upload refused; while
   * it is full, the agent is SIGKILLed and started again, or the kernel
   * restarted (which must go through or fail retryably, the kernel running
   * on); then the home is freed. Its driver waits meanwhile, since a restart
   * ends the runs of the old runner.
   */
  async function fillHome(): Promise<void> {
    const k = kernels[Math.floor(rnd() * kernels.length)]!;
    const n = faults.fill;
    const held = pause();
    k.pause = held;
    await held.reached;
    k.full = true;
    try {
      await run(k, fill(`${k.id}-fill${n}`));
      await upload(k, `after-fill-${n}.bin`, Buffer.alloc(MiB, 1));
      if (k.files.has(`after-fill-${n}.bin`)) problems.push(`an upload of 1 MiB to the full home of ${k.id} went through`);
      if (rnd() < 0.5) {
        await restartAgent('SIGKILL', `after a SIGKILL with the home of ${k.id} full`);
      } else {
        try {
          await link.client.callWithTimeout(120_000, methods.restart_kernel, k.id, KERNEL);
          count('restart_kernel with a full home: went through');
        } catch (err) {
          if (err instanceof RemoteError && err.remoteType === 'agent.InsufficientResources' && /runs on as it was/.test(err.message))
            count('restart_kernel with a full home: agent.InsufficientResources');
          else problems.push(`restart_kernel of ${k.id} with its home full failed otherwise: ${String(err)}`);
        }
        await checkHomes(`after a restart of ${k.id} with its home full`);
      }
      await run(k, free(`${k.id}-free${n}`));
    } finally {
      k.full = false;
      k.pause = null;
      held.release();
    }
  }

  /**
   * Restarts a kernel once its driver is between steps (a restart ends the
   * runs of the old runner), half of the times with a SIGKILL of the agent
   * 50-2000 ms into it; then the kernel must be listed, its home whole, and
   * it must run.
   */
  async function restartKernel(): Promise<void> {
    const k = kernels[Math.floor(rnd() * kernels.length)]!;
    const held = pause();
    k.pause = held;
    await held.reached;
    try {
      const killAfter = rnd() < 0.5 ? 50 + Math.floor(rnd() * 1950) : null;
      const restart = agent.client.callWithTimeout(120_000, methods.restart_kernel, k.id, KERNEL);
      if (killAfter === null) {
        await restart.catch((err: unknown) => problems.push(`restart_kernel of ${k.id} failed: ${String(err)}`));
        await checkHomes(`after a restart of ${k.id}`);
      } else {
        say(`SIGKILL ${killAfter} ms into the restart of ${k.id}`);
        const answered = restart.then(
          () => 'answered',
          () => 'cut',
        );
        await waitRealTime(killAfter, 'the agent dies at a random moment of the restart');
        await restartAgent('SIGKILL', `after a SIGKILL ${killAfter} ms into the restart of ${k.id}`);
        count(`restart_kernel ${await answered} by a SIGKILL of the agent`);
      }
      await run(k, verify(`${k.id}-restarted${faults.restart}`, k.files));
    } finally {
      k.pause = null;
      held.release();
    }
  }

  /**
   * A kernel made and destroyed with the agent SIGKILLed at a random moment
   * of one of them: 50-3000 ms into the create, after which a retried
   * create_kernel (idempotent per id) must give a kernel that runs, or
   * 0-500 ms into the destroy; a retried destroy must then leave nothing of
   * it (docs/kernels.rst, "What survives what").
   */
  async function lifecycle(): Promise<void> {
    const id = uniqueName('soak-life');
    const cut = (p: Promise<unknown>) =>
      p.then(
        () => 'answered',
        () => 'cut',
      );
    const killCreate = rnd() < 0.5;
    const create = cut(agent.client.callWithTimeout(120_000, methods.create_kernel, id, KERNEL));
    if (killCreate) {
      const into = 50 + Math.floor(rnd() * 2950);
      await waitRealTime(into, 'the agent dies at a random moment of the create');
      await restartAgent('SIGKILL', `after a SIGKILL ${into} ms into the create of ${id}`, [id]);
      count(`create_kernel ${await create} by a SIGKILL of the agent`);
    }
    try {
      await link.retried((c) => c.callWithTimeout(120_000, methods.create_kernel, id, KERNEL));
      const p = quick(`${id}-1`, 20);
      problems.push(...runProblems(id, p, await driveRun(link, id, `${id}-r1`, p)));
    } catch (err) {
      problems.push(`create_kernel of ${id}${killCreate ? ', tried again after a SIGKILL into its create,' : ''} failed: ${String(err)}`);
    }
    const destroy = cut(agent.client.callWithTimeout(120_000, methods.destroy_kernel, id));
    if (!killCreate) {
      const into = Math.floor(rnd() * 500);
      await waitRealTime(into, 'the agent dies at a random moment of the destroy');
      await restartAgent('SIGKILL', `after a SIGKILL ${into} ms into the destroy of ${id}`, [id]);
      count(`destroy_kernel ${await destroy} by a SIGKILL of the agent`);
    } else if ((await destroy) === 'cut') problems.push(`destroy_kernel of ${id} failed`);
    await link
      .retried((c) => c.callWithTimeout(120_000, methods.destroy_kernel, id))
      .catch((err: unknown) => {
        if (!(err instanceof RemoteError && err.remoteType === 'agent.KernelNotFound'))
          problems.push(`destroy_kernel of ${id} tried again failed: ${String(err)}`);
      });
    const left = [
      ...(await containersOf(agent.agentId)).filter((c) => c.Labels[LABELS.kernel] === id).map((c) => `container ${c.Names[0]}`),
      ...(existsSync(path.join(scratch, id)) ? [`home ${id}`] : []),
      ...(existsSync(path.join(scratch, '.scratch-files', agent.agentId, `${id}.ext4`)) ? [`file ${id}.ext4`] : []),
      ...mountsUnder(scratch).filter((m) => m.startsWith(`${path.join(scratch, id)} `)),
    ];
    if (left.length) problems.push(`kernel ${id}, destroyed, left ${left.join(', ')}`);
  }

  // Rounds of every kind of fault, each in a seeded order; the first round is made whole however long it takes (a loaded machine).
  let order: Fault[] = [];
  while (Date.now() < end || !Object.values(faults).every((n) => n > 0)) {
    await waitRealTime(500 + rnd() * 2000, 'faults come at random moments of the runs');
    if (Date.now() >= end && Object.values(faults).every((n) => n > 0)) break;
    if (!order.length) order = shuffled(FAULTS, rnd);
    const fault = order.shift()!;
    faults[fault]++;
    say(`fault ${fault} (${Math.round((Date.now() - started) / 1000)} s, ${runs.total} runs so far)`);
    if (fault === 'sigkill') await restartAgent('SIGKILL');
    else if (fault === 'sigterm') await restartAgent('SIGTERM');
    else if (fault === 'ports') await exhaustPorts();
    else if (fault === 'fill') await fillHome();
    else if (fault === 'restart') await restartKernel();
    else await lifecycle();
  }
  stopping = true;
  await Promise.all(drivers);

  // The end: every file checked from inside each kernel and from the host, then everything removed.
  for (const k of kernels) await run(k, verify(`${k.id}-final`, k.files));
  await checkHomes('at the end');
  for (const k of kernels) await link.retried((c) => c.callWithTimeout(120_000, methods.destroy_kernel, k.id));
  agent.proc.child.kill('SIGTERM');
  const code = await agent.proc.exited;
  if (code !== 0) problems.push(`the agent's last stop exited ${code}`);
  const leftovers = await leftoversOf(agent.agentId, scratch, range);
  say(`leftovers: ${JSON.stringify(leftovers)}`);
  return { seed: o.seed, seconds: o.seconds, kernels: kernels.length, runs, uploads, faults, expected, agentStarts, leftovers, problems };
}
