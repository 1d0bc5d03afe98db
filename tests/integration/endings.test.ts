/**
 * True termination reasons, against the real Docker engine and kernel
 * image: a kernel whose main process the kernel's OOM killer ends (the
 * test makes the container's init the OOM killer's first choice, then a run
 * fills the memory limit) is reported `oom-killed` with its stats and exit
 * code, the agent's log quotes the container's last lines, and get_logs says
 * so to the user after the kernel is gone; a plain exit stays
 * `self-terminated` with its exit code.
 */
import { promises as fs } from 'node:fs';
import { Writable } from 'node:stream';
import { expect } from 'chai';
import Docker from 'dockerode';
import { methods } from '../../src/rpc/methods.js';
import { createLogger } from '../../src/log.js';
import { requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { sink } from '../helpers/sink.js';
import { runToEnd } from '../helpers/run.js';

const docker = new Docker();

describe('termination reasons', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('reports a kernel ended by the OOM killer as oom-killed, with stats, exit code, its last lines logged and a line in get_logs', async () => {
    const s = await sink();
    const lines: string[] = [];
    const stream = new Writable({ write: (chunk: Buffer, _e, done) => void (lines.push(chunk.toString()), done()) });
    const log = createLogger({ level: 'info', format: 'json', stream });
    const { client } = await startAgent(
      {},
      (ns) =>
        ns
          .put('nodes/manager/event_addr')
          .value(s.addr)
          .then(() => undefined),
      log,
    );
    const id = uniqueName('k');
    const info = await client.callWithTimeout(60_000, methods.create_kernel, id, {
      lang: TEST_IMAGE_LANG,
      limits: { cpu_slot: 1, mem_slot: 64 },
      mounts: [],
      environ: {},
    });
    await runToEnd(client, id, 'print("about to fill memory")');
    // The container's init goes first when its cgroup runs out, and the memory is filled by many small processes,
    // each far smaller than the init's score: the OOM killer ends the container's main process.
    const pid = (await docker.getContainer(info.container_id).inspect()).State.Pid;
    await fs.writeFile(`/proc/${pid}/oom_score_adj`, '1000');
    const fill =
      'import subprocess\nps = [subprocess.Popen(["python3", "-c", "import time; x = b\'x\' * (8 << 20); time.sleep(120)"]) for _ in range(12)]\n[p.wait() for p in ps]\n';
    await runToEnd(client, id, fill, { timeoutMs: 60_000 }).catch(() => undefined);
    const ended = await s.next('kernel_terminated', 0, 60_000);
    expect(ended.args[0]).to.equal(id);
    expect(ended.args[1]).to.equal('oom-killed');
    expect(ended.args[2])
      .to.be.an('object')
      .that.includes({ end_detail: `exit-code-${(ended.args[2] as { exit_code: number }).exit_code}` });
    expect(lines.find((l) => l.includes('kernel container died by itself')))
      .to.match(/"reason":"oom-killed"/)
      .and.match(/lastOutput/);
    const logs = (await client.call(methods.get_logs, id)).logs;
    expect(logs).to.match(/\[agent\] the kernel was ended by the out-of-memory killer: its processes used all of its 64 MiB memory limit/);
  });

  it('keeps self-terminated for a plain exit, with the exit code as detail', async () => {
    const s = await sink();
    const { client } = await startAgent({}, (ns) =>
      ns
        .put('nodes/manager/event_addr')
        .value(s.addr)
        .then(() => undefined),
    );
    const id = uniqueName('k');
    const info = await client.callWithTimeout(60_000, methods.create_kernel, id, {
      lang: TEST_IMAGE_LANG,
      limits: { cpu_slot: 1, mem_slot: 128 },
      mounts: [],
      environ: {},
    });
    await docker.getContainer(info.container_id).kill({ signal: 'SIGKILL' });
    const ended = await s.next('kernel_terminated', 0, 30_000);
    expect(ended.args.slice(0, 2)).to.deep.equal([id, 'self-terminated']);
    expect(ended.args[2]).to.include({ end_detail: 'exit-code-137', exit_code: 137 });
    expect((await client.call(methods.get_logs, id)).logs).to.match(
      /\[agent\] the kernel's main process ended by itself with exit code 137\n$/,
    );
  });
});
