/**
 * Every result belongs to its run (issue: run integrity): runner deaths of
 * every kind, a create whose runner cannot start, runs ended by destroy,
 * restart and container death, late answers, two callers on one run, and
 * user code that takes the runner's own descriptors and handlers. Each case
 * checks every run involved — the dead one, those queued behind it and the
 * next ones — against the real image's runner through the agent.
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { methods } from '../../src/rpc/methods.js';
import { type RunResult } from '../../src/rpc/results.js';
import { AgentClient } from '../../src/rpc/client.js';
import {
  eventually,
  remoteError,
  REPO_ROOT,
  requireEtcd,
  spawnAgent,
  startAgent,
  TEST_IMAGE_LANG,
  TEST_IMAGE_PREFIX,
  uniqueName,
  coresHeld,
} from '../helpers/env.js';
import { removeImageAfterTest } from '../helpers/derived-image.js';
import { spawnedKernel } from '../helpers/spawned-kernel.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { sink } from '../helpers/sink.js';
import { waitRealTime } from '../helpers/real-time.js';

const docker = new Docker();
const config = (extra: Record<string, unknown> = {}) => ({
  lang: TEST_IMAGE_LANG,
  limits: { cpu_slot: 1, mem_slot: 256 },
  mounts: [],
  environ: {},
  ...extra,
});

/** Starts a run (one execute call) and drives `continue` to its end; every reply, in order. */
async function drive(client: AgentClient, id: string, first: Promise<RunResult>, timeoutMs = 60_000): Promise<RunResult[]> {
  const deadline = Date.now() + timeoutMs;
  const replies = [await first];
  while (replies.at(-1)!.status === 'continued' || replies.at(-1)!.status === 'build-finished') {
    if (Date.now() > deadline)
      throw new Error(`run ${replies[0]!.runId} did not finish: ${JSON.stringify(replies.map((r) => [r.status, r.console]))}`);
    replies.push(await client.callWithTimeout(30_000, methods.execute, 2, id, replies[0]!.runId, 'continue', '', {}, 1));
  }
  return replies;
}

const start = (client: AgentClient, id: string, code: string, runId: string | null = null, flush = 1) =>
  client.callWithTimeout(60_000, methods.execute, 2, id, runId, 'query', code, {}, flush);

/** A kernel of a fresh agent (with an event sink), its runner answering. */
async function kernel(extra: Record<string, unknown> = {}) {
  const events = await sink();
  const t = await startAgent({}, (etcd) =>
    etcd
      .put('nodes/manager/event_addr')
      .value(events.addr)
      .then(() => undefined),
  );
  const id = uniqueName('k');
  const info = await t.client.callWithTimeout(60_000, methods.create_kernel, id, config(extra));
  return { ...t, id, info, events };
}

describe('run integrity', function () {
  this.timeout(180_000);
  before(requireEtcd);

  it('a runner that dies ends its run with how it died; runs queued behind it and the next ones get their own output', async () => {
    const { client, id, events } = await kernel({ limits: { cpu_slot: 1, mem_slot: 128 } });
    const deaths: Array<[string, string, number, RegExp]> = [
      ['os._exit', 'import os; print("before"); os._exit(3)', 3, /runner exited with status 3/],
      ['SIGKILL', 'import os; os.kill(os.getpid(), 9)', 137, /runner died: signal 9 \(SIGKILL\)/],
      ['killpg', 'import os; os.killpg(0, 9)', 137, /runner died: signal 9/],
      ['segfault', 'import ctypes; ctypes.string_at(0)', 139, /runner died: signal 11 \(SIGSEGV\)/],
      ['execv', 'import os; os.execv("/bin/sh", ["sh", "-c", "exit 7"])', 7, /runner exited with status 7/],
      ['OOM kill', 'x = bytearray(400 * 1024 * 1024)', 137, /killed: out of memory \(limit 128 MiB\)/],
    ];
    for (const [what, code, exitCode, line] of deaths) {
      const tag = uniqueName('run');
      // A, and B queued behind it before A dies.
      const a = start(client, id, code, `${tag}-A`);
      const b = start(client, id, `print("output of B ${tag}")`, `${tag}-B`);
      const [ra, rb] = await Promise.all([drive(client, id, a), drive(client, id, b)]);
      const endA = ra.at(-1)!;
      expect(endA.status, what).to.equal('finished');
      expect(endA.exitCode, what).to.equal(exitCode);
      expect(consoleText(ra, 'stderr'), what)
        .to.match(line)
        .and.match(/state .*was lost/);
      expect(consoleText(ra, 'stdout'), what).to.not.contain('output of B');
      expect(rb.at(-1)!.exitCode, what).to.equal(0);
      expect(consoleText(rb, 'stdout'), what).to.equal(`output of B ${tag}\n`);
      expect(consoleText(rb, 'stderr'), what).to.equal('');
      // The next two runs: their own output, a fresh namespace (the state was lost).
      for (const n of [1, 2]) {
        const r = await runToEnd(client, id, `print("next ${n}", "x" in dir())`);
        expect(r.at(-1)!.exitCode, what).to.equal(0);
        expect(consoleText(r, 'stdout'), what).to.equal(`next ${n} False\n`);
      }
      await runToEnd(client, id, 'x = 1'); // state the next death loses
      const ev = await events.next('kernel_runner_restarted', 0, 5000);
      expect(ev.args[0]).to.equal(id);
      events.events.splice(events.events.indexOf(ev), 1);
      expect(String(ev.args[1]), what).to.match(line);
    }
  });

  it('a create whose runner cannot start fails naming what it printed, and leaves nothing; environ that breaks Python and too little memory are refused', async () => {
    const { client, agentId } = await startAgent({}, (etcd) =>
      etcd
        .put('config/agent/runner_ready_timeout')
        .value('3')
        .then(() => undefined),
    );
    const home = uniqueName('PYTHONHOME');
    const refused = await remoteError(
      client.call(
        methods.create_kernel,
        uniqueName('k'),
        config({ environ: { PYTHONHOME: '/nonexistent', [home.replace(/-/g, '_')]: '1' } }),
      ),
    );
    expect(refused.remoteType).to.equal('aiozmq.rpc.base.ParametersError');
    expect(String(refused.remoteArgs[0])).to.match(/PYTHONHOME would stop the kernel's Python runner/);
    for (const mem of [7, 8]) {
      const small = await remoteError(client.call(methods.create_kernel, uniqueName('k'), config({ limits: { mem_slot: mem } })));
      expect(small.remoteType).to.equal('aiozmq.rpc.base.ParametersError');
      expect(String(small.remoteArgs[0])).to.match(new RegExp(`mem_slot is ${mem} MiB: a kernel needs at least 32 MiB`));
    }
    const broken = await remoteError(
      client.callWithTimeout(30_000, methods.create_kernel, uniqueName('k'), config({ environ: { PYTHONIOENCODING: 'no-such-codec' } })),
    );
    expect(broken.remoteType).to.equal('agent.KernelCreationFailed');
    expect(String(broken.remoteArgs[0])).to.match(/runner did not come up .*LookupError: unknown encoding: no-such-codec/);
    expect(await docker.listContainers({ all: true, filters: { label: [`io.compute-agent.agent=${agentId}`] } })).to.have.length(0);
    expect(await coresHeld(client)).to.equal(0);
    // The smallest kernel accepted runs code.
    const id = uniqueName('k');
    await client.callWithTimeout(30_000, methods.create_kernel, id, config({ limits: { cpu_slot: 1, mem_slot: 32 } }));
    expect(consoleText(await runToEnd(client, id, 'import json; print(json.dumps([1]))'), 'stdout')).to.equal('[1]\n');
  });

  it('runs ended by destroy say terminated, runs that never started say not started: never a plain finished', async () => {
    const { client, id, agent } = await kernel();
    const calls = [
      start(client, id, 'import time; open("/home/work/r0-began", "w").close(); time.sleep(30)', 'r0', 20),
      ...[1, 2, 3].map((n) => start(client, id, `print(${n})`, `r${n}`, 20)),
    ];
    // Destroy once the agent has heard the runner start r0 (its `started` record), so that r0 is cut, not unstarted.
    await (await agent.kernelService!.relay(id)).whenRun('r0', 'started');
    await client.call(methods.destroy_kernel, id, 'user-requested');
    const replies = await Promise.all(calls);
    expect(replies.map((r) => [r.status, r.exitCode])).to.deep.equal([
      ['finished', -1],
      ['finished', -1],
      ['finished', -1],
      ['finished', -1],
    ]);
    expect(consoleText([replies[0]!], 'stderr')).to.equal('terminated: user-requested\n');
    for (const r of replies.slice(1)) {
      expect(consoleText([r], 'stderr')).to.equal('not started: user-requested\n');
      expect(consoleText([r], 'stdout')).to.equal('');
    }
  });

  it('runs cut by restart_kernel say terminated: restarting, also to a continue after it; the restarted kernel runs code', async () => {
    const { client, id } = await kernel();
    const first = await start(client, id, 'import time; print("going"); time.sleep(30)', 'long', 0.5);
    expect(first.status).to.equal('continued');
    await client.callWithTimeout(30_000, methods.restart_kernel, id, config());
    const after = await client.call(methods.execute, 2, id, 'long', 'continue', '', {});
    expect([after.status, after.exitCode]).to.deep.equal(['finished', -1]);
    expect(consoleText([first, after], 'stdout')).to.equal('going\n');
    expect(consoleText([after], 'stderr')).to.equal('terminated: restarting\n');
    expect(consoleText(await runToEnd(client, id, 'print("fresh")'), 'stdout')).to.equal('fresh\n');
  });

  it('a container killed behind the agent ends its run as terminated: self-terminated', async () => {
    const { client, id, info, agent } = await kernel();
    const call = start(client, id, 'import time; open("/home/work/k1-began", "w").close(); time.sleep(30)', 'k1', 20);
    await (await agent.kernelService!.relay(id)).whenRun('k1', 'started');
    await docker.getContainer(info.container_id).kill();
    const r = await call;
    expect([r.status, r.exitCode]).to.deep.equal(['finished', -1]);
    expect(consoleText([r], 'stderr')).to.equal('terminated: self-terminated\n');
  });

  it('a late completion answer goes to no one: the next request gets its own', async () => {
    const { client, id, info } = await kernel();
    await runToEnd(client, id, 'zebra_count = 1; apple_pie = 2');
    const c = docker.getContainer(info.container_id);
    await c.pause();
    try {
      const err = await remoteError(client.callWithTimeout(15_000, methods.get_completions, id, 'zebr', {}));
      expect(err.remoteType).to.equal('agent.KernelUnresponsive');
    } finally {
      await c.unpause();
    }
    const next = await client.call(methods.get_completions, id, 'apple', {});
    expect(next.completions).to.deep.equal(['apple_pie']);
    const again = await client.call(methods.get_completions, id, 'zebr', {});
    expect(again.completions).to.deep.equal(['zebra_count']);
  });

  it('two callers waiting on one run are both answered at once with the same answer', async () => {
    const { client, id } = await kernel();
    const first = await start(client, id, 'import time; time.sleep(1.5); print("done")', 'shared', 0.3);
    expect(first.status).to.equal('continued');
    const t0 = Date.now();
    const [x, y] = await Promise.all(
      [0, 1].map(() => client.callWithTimeout(30_000, methods.execute, 2, id, 'shared', 'continue', '', {}, 10)),
    );
    expect(Date.now() - t0).to.be.below(8000); // woken by the end of the run, not by the 10 s flush timeout
    expect(x).to.deep.equal(y);
    expect([x!.status, x!.exitCode]).to.deep.equal(['finished', 0]);
    expect(consoleText([x!], 'stdout')).to.equal('done\n');
    const gone = await remoteError(client.call(methods.execute, 2, id, 'shared', 'continue', '', {}));
    expect(gone.remoteType).to.equal('agent.RunNotFound');
  });

  it('the runner survives user code that closes fds 1 and 2, replaces sys.stdout and SIGINT, and leaves threads printing', async () => {
    const { client, id, agent } = await kernel();
    expect((await runToEnd(client, id, 'import os; os.close(1); os.close(2)')).at(-1)!.exitCode).to.equal(0);
    // No spinning capture thread: the kernel stays idle.
    const cpu = async () => (await client.call(methods.list_kernels)).find((k) => k.id === id)!.cpu_used!;
    const c0 = await cpu();
    await waitRealTime(3000, 'an idle kernel must use almost no CPU over this time: a spinning capture thread would');
    expect((await cpu()) - c0).to.be.below(600);
    const sub = await runToEnd(
      client,
      id,
      'import subprocess\nf = open("/home/work/mine.txt", "w")\nsubprocess.run(["echo", "from a subprocess"])\nf.close()',
    );
    expect(consoleText(sub, 'stdout')).to.equal('from a subprocess\n');
    // ... and not into the file user code opened next (it would have got fd 1).
    expect(consoleText(await runToEnd(client, id, 'print(repr(open("/home/work/mine.txt").read()))'), 'stdout')).to.equal("''\n");
    await runToEnd(client, id, 'import sys, io, signal\nsys.stdout = io.StringIO()\nsignal.signal(signal.SIGINT, signal.SIG_IGN)');
    const loop = start(client, id, 'print("looping")\nopen("/home/work/loop-began", "w").close()\nwhile True: pass', 'loop', 0.5);
    await eventually('the loop to run', () => existsSync(path.join(agent.options.scratchRoot, id, 'loop-began')), 30_000);
    await client.call(methods.interrupt_kernel, id);
    const rl = await drive(client, id, loop);
    expect(consoleText(rl, 'stdout')).to.equal('looping\n');
    expect(consoleText(rl, 'stderr')).to.contain('KeyboardInterrupt');
    await runToEnd(
      client,
      id,
      'import threading, time\ndef chatter():\n    for i in range(10):\n        print("late", i)\n        time.sleep(0.1)\n    open("/home/work/chatter-done", "w").close()\nthreading.Thread(target=chatter).start()',
    );
    await eventually('the thread to stop printing', () => existsSync(path.join(agent.options.scratchRoot, id, 'chatter-done')), 30_000);
    expect(consoleText(await runToEnd(client, id, 'print("mine")'), 'stdout')).to.equal('mine\n');
  });

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`an agent ${signal} mid-run: the restarted agent gives the old run the rest of its own output, and a new run only its own`, async () => {
      const { args, first, client, id, scratch } = await spawnedKernel(config());
      // The old run prints a line, then waits for the test's go-ahead (a file in its home).
      const code =
        'import os, time\nprint("old start", flush=True)\nwhile not os.path.exists("/home/work/go"): time.sleep(0.05)\nprint("old run end")';
      const seen = [await client.callWithTimeout(30_000, methods.execute, 2, id, 'old', 'query', code, {}, 1)];
      while (!consoleText(seen, 'stdout').includes('old start'))
        seen.push(await client.callWithTimeout(30_000, methods.execute, 2, id, 'old', 'continue', '', {}, 1));
      // A continue waiting on the run when the signal comes; a ping after it on the same connection shows it is in flight.
      const old = client.callWithTimeout(40_000, methods.execute, 2, id, 'old', 'continue', '', {}, 25);
      await client.call(methods.ping, 'after the continue');
      first.child.kill(signal);
      await first.exited;
      if (signal === 'SIGTERM') {
        const r = await old; // answered by the drain: still running, so continued, never finished
        expect(r.status).to.equal('continued');
        seen.push(r);
      } else old.catch(() => undefined); // the agent died with the call
      const second = spawnAgent(args);
      await second.waitFor(/"message":"agent running"/);
      // A new run opens the restarted agent's relay, which takes over the old run; then the old run may go on.
      const freshRun = drive(client, id, start(client, id, 'print("new run 1")', 'new1'));
      await second.waitFor(/"message":"took over the runs the kernel runner holds/);
      await fs.writeFile(path.join(scratch, id, 'go'), '');
      const fresh = await freshRun;
      expect(fresh.at(-1)!.exitCode).to.equal(0);
      expect(consoleText(fresh, 'stdout')).to.equal('new run 1\n');
      const rest = await drive(client, id, client.callWithTimeout(30_000, methods.execute, 2, id, 'old', 'continue', '', {}, 1));
      expect(rest.at(-1)!.status).to.equal('finished');
      expect(rest.at(-1)!.exitCode).to.equal(0);
      // What a reply gave ("old start") is not given again; the rest comes from the restarted agent.
      expect(consoleText([...seen, ...rest], 'stdout')).to.equal('old start\nold run end\n');
      const lost = await remoteError(client.call(methods.execute, 2, id, 'never-was', 'continue', '', {}));
      expect(lost.remoteType).to.equal('agent.RunLost');
      expect(consoleText(await runToEnd(client, id, 'print("after")'), 'stdout')).to.equal('after\n');
    });
  }

  it('a runner that does not tag (no hello): a death is found by liveness probes; queued runs still get their own output', async () => {
    // A foreign runner layered on the image: the same entrypoint (which restarts it), another RUNNER.
    const tag = uniqueName('foreign');
    const base = await docker.createContainer({
      Image: `${TEST_IMAGE_PREFIX}${TEST_IMAGE_LANG}`,
      Cmd: ['/opt/kernel/entrypoint.sh'],
      Env: ['RUNNER=/opt/kernel/foreign_runner.py'],
      Labels: { 'io.compute-agent.test': tag },
    });
    try {
      const pack = tar.pack();
      pack.entry({ name: 'foreign_runner.py', mode: 0o644 }, await fs.readFile(path.join(REPO_ROOT, 'tests/fixtures/foreign_runner.py')));
      pack.finalize();
      await base.putArchive(pack as unknown as NodeJS.ReadableStream, { path: '/opt/kernel' });
      await base.commit({ repo: 'lablup/kernel-python', tag });
    } finally {
      await base.remove({ force: true });
    }
    removeImageAfterTest(`lablup/kernel-python:${tag}`);
    const { client, id, agent } = await kernel({ lang: `python:${tag}` });
    expect(consoleText(await runToEnd(client, id, '%ping'), 'stdout')).to.equal('pong!\n');
    expect((await agent.kernelService!.relay(id)).protocol).to.equal('untagged');
    // B reaches the runner's queue before A ends the runner: it is lost with it, and must be sent again.
    const a = start(client, id, 'import os, time; time.sleep(0.5); os._exit(3)', 'fa');
    const b = start(client, id, 'print("output of B")', 'fb');
    const [ra, rb] = await Promise.all([drive(client, id, a, 90_000), drive(client, id, b, 90_000)]);
    expect([ra.at(-1)!.status, ra.at(-1)!.exitCode]).to.deep.equal(['finished', -1]);
    expect(consoleText(ra, 'stderr')).to.match(/runner lost the run/);
    expect(consoleText(rb, 'stdout')).to.equal('output of B\n');
    expect(rb.at(-1)!.exitCode).to.equal(0);
    expect(consoleText(await runToEnd(client, id, 'print("C")'), 'stdout')).to.equal('C\n');
  });

  it(`fuzz: random runs, runner kills, interrupts, completions and restarts on one kernel; every byte a run gets is its own`, async function () {
    const seconds = Number(process.env.RUN_INTEGRITY_FUZZ_SECONDS ?? 8); // the suite's short form; `npm run drills` runs 120
    this.timeout((seconds + 120) * 1000);
    const { client, id } = await kernel();
    let seed = Number(process.env.RUN_INTEGRITY_FUZZ_SEED ?? Date.now() % 100_000);
    const rand = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    const seedUsed = seed;
    const outstanding = new Set<Promise<void>>();
    const problems: string[] = [];
    const counts = { runs: 0, kills: 0, interrupts: 0, completions: 0, restarts: 0, ok: 0, ended: 0 };
    const launch = (kind: 'print' | 'kill') => {
      const rid = `f${++counts.runs}`;
      const code =
        kind === 'kill'
          ? `print("${rid}:a"); import os; os._exit(5)`
          : `import sys, time\nprint("${rid}:a")\ntime.sleep(${(rand() * 0.4).toFixed(2)})\nsys.stderr.write("${rid}:e\\n")\nprint("${rid}:b")`;
      const p = drive(client, id, start(client, id, code, rid, Number((0.1 + rand()).toFixed(2))), 120_000).then(
        (replies) => {
          const end = replies.at(-1)!;
          const out = consoleText(replies, 'stdout');
          const err = consoleText(replies, 'stderr');
          for (const line of out.split('\n').filter(Boolean))
            if (!line.startsWith(`${rid}:`)) problems.push(`${rid} got someone else's output: ${JSON.stringify(line)}`);
          for (const line of err.split('\n').filter(Boolean)) {
            if (
              !line.startsWith(`${rid}:`) &&
              !/^(terminated: |not started: |runner |killed: |Traceback|KeyboardInterrupt| {2})/.test(line)
            )
              problems.push(`${rid} got a stderr line not its own: ${JSON.stringify(line)}`);
          }
          if (end.status !== 'finished') problems.push(`${rid} ended with ${end.status}`);
          if (end.exitCode === 0) {
            counts.ok++;
            if (kind === 'kill' || out !== `${rid}:a\n${rid}:b\n`)
              problems.push(`${rid} reported success but printed ${JSON.stringify(out)}`);
          } else counts.ended++;
          if (kind === 'kill' && end.exitCode === 5 && !/runner exited with status 5/.test(err))
            problems.push(`${rid} died without saying so: ${JSON.stringify(err)}`);
        },
        (e: unknown) => void problems.push(`${rid}: ${String(e)}`),
      );
      outstanding.add(p);
      void p.finally(() => outstanding.delete(p));
    };
    const deadline = Date.now() + seconds * 1000;
    // Past the deadline the fuzz goes on (up to as long again) while no run has ended well, launching only
    // runs that print: a slow machine whose few runs all met a kill has not yet tried what the fuzz is for.
    const lastChance = deadline + seconds * 1000;
    for (;;) {
      const now = Date.now();
      if (problems.length > 0 || now >= lastChance || (now >= deadline && counts.ok > 0)) break;
      const x = rand();
      if (now >= deadline) {
        if (outstanding.size < 3) launch('print');
        else await Promise.race(outstanding);
        continue;
      }
      // at most 3 runs out at once, kills included: a kill behind a full queue only ends the runs before it
      if (outstanding.size >= 3 && x < 0.58) await Promise.race(outstanding);
      else if (x < 0.5) launch('print');
      else if (x < 0.58) {
        counts.kills++;
        launch('kill');
      } else if (x < 0.68) {
        counts.interrupts++;
        await client.call(methods.interrupt_kernel, id);
      } else if (x < 0.8) {
        counts.completions++;
        const r = await client
          .callWithTimeout(15_000, methods.get_completions, id, 'pri', {})
          .catch((e: unknown) => ({ completions: [], error: String(e) }));
        if (r.completions.some((c) => !c.startsWith('pri'))) problems.push(`a completion of "pri" got ${JSON.stringify(r.completions)}`);
      } else if (x < 0.82) {
        counts.restarts++;
        await client.callWithTimeout(60_000, methods.restart_kernel, id, config());
      }
      await waitRealTime(rand() * 300, 'the fuzz spaces its operations at random moments: the timing is the input');
    }
    await Promise.all([...outstanding]);
    expect(problems, `seed ${seedUsed}, ${JSON.stringify(counts)}`).to.deep.equal([]);
    expect(counts.ok, JSON.stringify(counts)).to.be.above(0);
    expect(consoleText(await runToEnd(client, id, '%ping'), 'stdout')).to.equal('pong!\n');
  });
});
