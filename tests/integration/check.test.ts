/**
 * `agent check`, the real CLI against the real etcd and Docker: it passes on
 * this machine's set-up, and each failure is one clear line with a fix (a
 * scratch root the agent's user cannot write, a read-only mount, an
 * unreachable etcd, a taken port and a live agent of the same id, a bad etcd
 * setting), with exit code 1; `--json` gives the same as one document.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import {
  AGENT_BIN,
  ETCD_ADDR,
  eventually,
  freePort,
  onCleanup,
  requireEtcd,
  startAgent,
  tempScratch,
  testEtcd,
  uniqueName,
} from '../helpers/env.js';

interface CheckRun {
  code: number | null;
  out: string;
  err: string;
}

/** Runs `agent check` with the given flags (optionally as another uid, or wrapped in another command). */
function runCheck(args: string[], opts: { uid?: number; wrap?: string[] } = {}): Promise<CheckRun> {
  const cmd = [...(opts.wrap ?? []), process.execPath, AGENT_BIN, 'check', ...args];
  const child = spawn(cmd[0]!, cmd.slice(1), { uid: opts.uid, env: { ...process.env, BACKEND_ETCD_ADDR: ETCD_ADDR } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  onCleanup(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err })));
}

/** The line of one check and the line after it (its fix, for a failure). */
function lineOf(run: CheckRun, name: string): { line: string; fix: string } {
  const lines = run.out.split('\n');
  const i = lines.findIndex((l) => l.slice(7).startsWith(name));
  expect(i, `no line for "${name}" in:\n${run.out}${run.err}`).to.be.at.least(0);
  return { line: lines[i]!, fix: lines[i + 1]?.trim() ?? '' };
}

/** Flags that are fine on this machine: own namespace, agent id, port and scratch root. */
async function goodFlags(): Promise<string[]> {
  return [
    '--namespace',
    uniqueName('test'),
    '--agent-id',
    uniqueName('i-test'),
    '--agent-port',
    String(await freePort()),
    '--bind-host',
    '127.0.0.1',
    '--scratch-root',
    await tempScratch(),
  ];
}

describe('agent check', () => {
  before(requireEtcd);

  it('passes every check on this machine and exits 0', async function () {
    this.timeout(30_000);
    const run = await runCheck(await goodFlags());
    expect(run.code, run.out + run.err).to.equal(0);
    const lines = run.out.trim().split('\n');
    // Out of the box, RPC is not authenticated (CURVE is off for 2018 managers): a warning, not a failure.
    expect(lines.pop()).to.match(/^all \d+ checks passed \(1 warning\)$/);
    expect(lineOf(run, 'security settings').line).to.match(/^\[warn\] security settings\s+1 protection\(s\) turned off: rpc_keypair_file$/);
    expect(lineOf(run, 'security settings').fix).to.match(/^warn: rpc_keypair_file: RPC is not authenticated.*; fix: run agent keygen/);
    for (const l of lines.filter((x) => !x.startsWith('[warn]') && !x.trim().startsWith('warn:'))) expect(l).to.match(/^\[ ok \] /);
    expect(lineOf(run, 'etcd reachable').line).to.match(/answers \(etcd \d+\.\d+/);
    expect(lineOf(run, 'Docker reachable').line).to.match(/Docker \d+\.\d+/);
    expect(lineOf(run, 'kernel images present').line).to.include('python:3-debian');
    expect(lineOf(run, 'scratch quotas (hostfile)').line).to.match(
      /hostfile homes can work here \(mkfs.ext4, loop devices \(\/dev\/loop\d+ free\), the right to mount\); scratch_type is hostdir$/,
    );
    expect(lineOf(run, 'cgroup controllers').line).to.match(/cgroup v[12] with .*memory/);
    expect(lineOf(run, 'runner environment').line).to.match(
      /^\[ ok \] runner environment +\/var\/lib\/compute-agent\/runner\/[0-9a-f]{24}: \d+ entries, [\d.]+ MiB, every file as its manifest says$/,
    );
    expect(lineOf(run, 'kernel isolation').line).to.match(
      /iptables v[\d.]+.* can keep kernels apart; kernel_egress allow; its chains \(mangle\/CA-.*-PRE, filter\/CA-.*-IN, filter\/CA-.*-FWD\) are installed when the agent starts$/,
    );
    expect(lineOf(run, 'docker swarm').line).to.match(
      /the engine is in no swarm: multi-node sessions are refused \(docker swarm join serves them\)$/,
    );
  });

  it("fails with one clear line when the scratch root is not writable for the agent's user", async function () {
    this.timeout(30_000);
    const scratch = await tempScratch(); // mode 0700, owned by root
    const flags = (await goodFlags()).slice(0, -1).concat(scratch);
    const run = await runCheck(flags, { uid: 65534 });
    expect(run.code, run.out + run.err).to.equal(1);
    const { line, fix } = lineOf(run, 'scratch root writable');
    expect(line).to.equal(`[FAIL] scratch root writable        --scratch-root ${scratch} is not writable (EACCES)`);
    expect(fix).to.match(/^fix: give the agent's user write access .* or point --scratch-root \/ BACKEND_SCRATCH_ROOT elsewhere$/);
    // The same user may not use Docker's socket either, which the checklist says just as clearly.
    const docker = lineOf(run, 'Docker reachable');
    expect(docker.line).to.match(/^\[FAIL\] Docker reachable +permission denied on \/var\/run\/docker\.sock$/);
    expect(docker.fix).to.match(/^fix: .*docker group/);
    expect(run.out.trim().split('\n').pop()).to.match(/^\d+ of \d+ checks failed( \(\d+ warnings?\))?$/);
  });

  it('fails when the scratch root is on a read-only mount, which root could otherwise write', async function () {
    this.timeout(30_000);
    if (spawnSync('unshare', ['--mount', 'true']).status !== 0) this.skip(); // no mount namespaces here
    const scratch = await tempScratch();
    const flags = (await goodFlags()).slice(0, -1).concat(scratch);
    // A private mount namespace: the read-only bind mount is seen by this one process only.
    const wrap = [
      'unshare',
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      'mount --bind -o ro "$1" "$1" && shift && exec "$@"',
      'sh',
      scratch,
    ];
    const run = await runCheck(flags, { wrap });
    expect(run.code, run.out + run.err).to.equal(1);
    const { line, fix } = lineOf(run, 'scratch root writable');
    expect(line).to.match(/\[FAIL\] scratch root writable +--scratch-root .* is not writable \(EROFS\)$/);
    expect(fix).to.match(/^fix: it is on a read-only mount: remount it read-write/);
  });

  it('fails with one clear line when etcd does not answer, and does not run the checks that need it', async function () {
    this.timeout(30_000);
    const dead = await freePort();
    const run = await runCheck([...(await goodFlags()), '--etcd-addr', `127.0.0.1:${dead}`]);
    expect(run.code, run.out + run.err).to.equal(1);
    const { line, fix } = lineOf(run, 'etcd reachable');
    expect(line).to.match(new RegExp(`^\\[FAIL\\] etcd reachable +etcd does not answer at 127\\.0\\.0\\.1:${dead} \\(ECONNREFUSED\\)$`));
    expect(fix).to.equal('fix: start etcd, or fix --etcd-addr / BACKEND_ETCD_ADDR');
    expect(lineOf(run, 'agent id free').line).to.match(/not checked: "etcd reachable" failed$/);
    expect(lineOf(run, 'scratch root writable').line).to.match(/^\[ ok \]/); // the rest is still checked
  });

  it('fails when the RPC port is taken and an agent with the same id is alive', async function () {
    this.timeout(30_000);
    const { port, namespace, agentId, etcd } = await startAgent();
    await eventually('the first heartbeat in etcd', async () => (await etcd.get(`nodes/agents/${agentId}/heartbeat`).string()) !== null);
    const run = await runCheck([
      '--namespace',
      namespace,
      '--agent-id',
      agentId,
      '--agent-port',
      String(port),
      '--bind-host',
      '127.0.0.1',
      '--scratch-root',
      await tempScratch(),
    ]);
    expect(run.code, run.out + run.err).to.equal(1);
    const taken = lineOf(run, 'RPC port free');
    expect(taken.line).to.match(new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\)$`));
    expect(taken.fix).to.include(`ss -ltnp 'sport = ${port}'`);
    expect(lineOf(run, 'agent id free').line).to.match(
      /\[FAIL\] agent id free +an agent registered as .* is alive \(running, last heartbeat \d+ s ago from tcp:\/\/127\.0\.0\.1:\d+\)$/,
    );
  });

  it('warns about each protection the settings turn off, with its fix', async function () {
    this.timeout(30_000);
    const flags = await goodFlags();
    const { ns } = testEtcd(flags[1]!);
    await ns.put('config/agent/kernel_seccomp').value('unconfined');
    await ns.put('config/agent/kernel_pids_limit').value('0');
    await ns.put('config/agent/kernel_isolation').value('off');
    const run = await runCheck(flags);
    expect(run.code, run.out + run.err).to.equal(0);
    expect(run.out).to.match(/warn: kernel_isolation: no firewall chains .*; fix: set kernel_isolation to on/);
    expect(lineOf(run, 'kernel isolation').line).to.match(/kernel_isolation is off: no firewall chains are installed$/);
    expect(lineOf(run, 'security settings').line).to.match(/turned off: .*kernel_seccomp/);
    expect(run.out).to.match(/warn: kernel_seccomp: .*; fix: /);
    expect(run.out).to.match(/warn: kernel_pids_limit: .*; fix: /);
    expect(run.out.trim().split('\n').pop()).to.match(/^all \d+ checks passed \(4 warnings\)$/);
  });

  it('fails when a file of the runner environment differs from its manifest, and only warns when there is none', async function () {
    this.timeout(30_000);
    // A tiny environment of the test's own: one file and its manifest, named by the manifest's digest.
    const root = await tempScratch();
    const body = 'print("runner")\n';
    const manifest = `f 644 ${body.length} ${createHash('sha256').update(body).digest('hex')} runner.py\n`;
    const dir = path.join(root, createHash('sha256').update(manifest).digest('hex').slice(0, 24));
    await fs.mkdir(dir, { mode: 0o755 });
    await fs.writeFile(path.join(dir, 'runner.py'), 'print("RUNNER")\n', { mode: 0o644 }); // same size, other bytes
    await fs.writeFile(path.join(dir, 'MANIFEST'), manifest);
    await fs.writeFile(`${dir}.installed`, '');
    const flags = await goodFlags();
    const { ns } = testEtcd(flags[1]!);
    await ns.put('config/agent/runner_env_root').value(root);
    const run = await runCheck(flags);
    expect(run.code, run.out + run.err).to.equal(1);
    const { line, fix } = lineOf(run, 'runner environment');
    expect(line).to.match(
      /^\[FAIL\] runner environment +the runner environment \S+ fails its check: \S+\/runner\.py differs from its manifest \(SHA-256\)$/,
    );
    expect(fix).to.match(/^fix: build one with deploy\/runner-env\/build\.sh/);
    await ns.put('config/agent/runner_env_root').value(path.join(root, 'none'));
    const none = await runCheck(flags);
    expect(lineOf(none, 'runner environment').line).to.match(/^\[warn\] runner environment +no runner environment under /);
  });

  it('prints one JSON document with --json: each check with its status, message and fix; the exit code as without it', async function () {
    this.timeout(30_000);
    const flags = await goodFlags();
    const { ns } = testEtcd(flags[1]!);
    await ns.put('config/agent/kernel_seccomp').value('unconfined');
    type Doc = {
      ok: boolean;
      summary: string;
      checks: Array<{ name: string; status: string; message: string; fix: string; warnings: Array<{ message: string; fix: string }> }>;
    };
    const good = await runCheck([...flags, '--json']);
    expect(good.code, good.out + good.err).to.equal(0);
    const doc = JSON.parse(good.out) as Doc;
    expect(doc.ok).to.equal(true);
    expect(doc.summary).to.match(/^all \d+ checks passed \(2 warnings\)$/);
    expect(doc.checks.map((c) => c.status)).to.satisfy((s: string[]) => s.every((x) => x === 'ok' || x === 'warn'));
    const security = doc.checks.find((c) => c.name === 'security settings')!;
    expect(security.status).to.equal('warn');
    expect(security.message).to.equal('2 protection(s) turned off: rpc_keypair_file, kernel_seccomp');
    expect(security.warnings.find((w) => w.message.startsWith('kernel_seccomp:'))).to.deep.include({
      fix: 'set kernel_seccomp to default',
    });
    expect(security.fix).to.include('set kernel_seccomp to default');
    expect(doc.checks.find((c) => c.name === 'Docker reachable')).to.deep.include({ status: 'ok', fix: '', warnings: [] });

    const dead = await freePort();
    const bad = await runCheck([...flags, '--json', '--etcd-addr', `127.0.0.1:${dead}`]);
    expect(bad.code, bad.out + bad.err).to.equal(1);
    const failed = JSON.parse(bad.out) as Doc;
    expect(failed.ok).to.equal(false);
    expect(failed.checks.find((c) => c.name === 'etcd reachable')).to.deep.equal({
      name: 'etcd reachable',
      status: 'fail',
      message: `etcd does not answer at 127.0.0.1:${dead} (ECONNREFUSED)`,
      fix: 'start etcd, or fix --etcd-addr / BACKEND_ETCD_ADDR',
      warnings: [],
    });
    expect(failed.checks.find((c) => c.name === 'agent id free')).to.deep.include({
      status: 'fail',
      message: 'not checked: "etcd reachable" failed',
    });

    const usage = await runCheck([...flags.slice(0, 5), '0', ...flags.slice(6), '--json']); // --agent-port 0: a bad flag
    expect(usage.code, usage.out + usage.err).to.equal(2);
    expect((JSON.parse(usage.out) as Doc).ok).to.equal(false);
  });

  it('fails naming the etcd key of a bad setting', async function () {
    this.timeout(30_000);
    const flags = await goodFlags();
    const { ns } = testEtcd(flags[1]!);
    await ns.put('config/agent/cpu_overcommit').value('lots');
    const run = await runCheck(flags);
    expect(run.code).to.equal(1);
    const { line, fix } = lineOf(run, 'etcd namespace and settings');
    expect(line).to.include(`/sorna/${flags[1]}/config/agent/cpu_overcommit: "lots" is not a number`);
    expect(fix).to.match(/^fix: fix or delete it/);
  });
});
