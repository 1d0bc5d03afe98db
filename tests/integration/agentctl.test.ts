/**
 * agentctl, the real binary, against a real agent (etcd, Docker, the kernel
 * image): run with output, exit codes and input; kernels, files, errors;
 * discovery through etcd; events without a manager.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { agentctl, startAgentctl } from '../helpers/ctl.js';
import {
  containersOf,
  eventually,
  kernelIds,
  requireEtcd,
  startAgent,
  TEST_IMAGE_LANG,
  testEtcd,
  uniqueName,
  type TestAgent,
} from '../helpers/env.js';

const ctl = (t: TestAgent, ...args: string[]) => agentctl(['--agent', `tcp://127.0.0.1:${t.port}`, ...args]);

describe('agentctl', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('run prints the output, exits 0, and leaves no kernel behind', async () => {
    const t = await startAgent();
    const r = await ctl(t, 'run', 'python', 'print(6*7)');
    expect(r.stderr).to.equal('');
    expect(r.stdout).to.equal('42\n');
    expect(r.code).to.equal(0);
    expect(await kernelIds(t.client)).to.deep.equal([]);
    await eventually('the kernel container to be removed', async () => (await containersOf(t.agentId)).length === 0);
  });

  it('run of a raising program exits non-zero with the traceback on stderr; sys.exit sets the code', async () => {
    const t = await startAgent();
    const bad = await ctl(t, 'run', 'python', 'print("before")\n1/0');
    expect(bad.code).to.equal(1);
    expect(bad.stdout).to.equal('before\n');
    expect(bad.stderr).to.match(/Traceback[\s\S]*ZeroDivisionError: division by zero/);
    const three = await ctl(t, 'run', 'python', 'import sys; sys.exit(3)');
    expect(three.code).to.equal(3);
    expect(await kernelIds(t.client)).to.deep.equal([]);
  });

  it('run answers input requests with lines of stdin, and runs a file', async () => {
    const t = await startAgent();
    const code = 'a = input("who? ")\nb = input("and? ")\nprint("hi", a, "and", b)';
    const r = await agentctl(['--agent', `tcp://127.0.0.1:${t.port}`, 'run', 'python', code], { input: 'bob\nalice\n' });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal('who? and? hi bob and alice\n');

    const file = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'ctl-')), 'prog.py');
    await fs.writeFile(file, 'for i in range(3):\n    print(i)\n');
    const fromFile = await ctl(t, 'run', TEST_IMAGE_LANG, '-f', file);
    await fs.rm(path.dirname(file), { recursive: true });
    expect(fromFile.stdout).to.equal('0\n1\n2\n');
  });

  it('Ctrl-C during run interrupts the code, and the kernel is still destroyed', async () => {
    const t = await startAgent();
    const { child, done } = startAgentctl([
      '--agent',
      `tcp://127.0.0.1:${t.port}`,
      'run',
      'python',
      'import time\nprint("sleeping", flush=True)\ntime.sleep(120)',
    ]);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await eventually('the program to start', () => out.includes('sleeping'), 60_000);
    child.kill('SIGINT');
    const r = await done;
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/KeyboardInterrupt/);
    expect(await kernelIds(t.client)).to.deep.equal([]);
  });

  it('run --keep keeps the kernel; kernels lists it; files go in and out; destroy removes it', async () => {
    const t = await startAgent();
    const kept = await ctl(t, 'run', '--keep', 'python', 'open("made.txt", "w").write("made in the kernel")');
    expect(kept.code, kept.stderr).to.equal(0);
    const id = /kept kernel (\S+)/.exec(kept.stderr)?.[1];
    expect(id, kept.stderr).to.be.a('string');

    const listed = JSON.parse((await ctl(t, 'kernels', '--json')).stdout) as Array<Record<string, unknown>>;
    expect(listed).to.have.length(1);
    expect(listed[0]).to.include({ id, image: 'lablup/kernel-python:3-debian', state: 'running', mem_mib: 256 });
    expect(listed[0]!.mem_cur_bytes).to.be.a('number').above(0);
    expect((await t.client.call(methods.list_kernels)).map((k) => k.id)).to.deep.equal([id]);
    const table = await ctl(t, 'kernels');
    expect(table.stdout.split('\n')[0]).to.match(/^ID\s+IMAGE\s+STATE\s+CORES\s+MEM/);
    expect(table.stdout).to.contain(id!);
    const node = JSON.parse((await ctl(t, 'node', '--json')).stdout) as {
      node: Record<string, number>;
      kernels: Record<string, { mem_cur_bytes: number }>;
    };
    expect(node.node.mem_total_bytes).to.be.above(0);
    expect(node.kernels[id!]!.mem_cur_bytes).to.be.above(0);
    const nodeText = (await ctl(t, 'node')).stdout;
    expect(nodeText).to.match(/^cpu [\d.]+% {2}memory .+ used of .+ {2}scratch disk .+ used of .+\n/);
    expect(nodeText).to.match(new RegExp(`^${id}\\s+[\\d.]+s\\s`, 'm'));

    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ctl-'));
    try {
      await fs.writeFile(path.join(dir, 'up.txt'), 'sent by agentctl');
      expect((await ctl(t, 'upload', id!, path.join(dir, 'up.txt'), 'sub/up.txt')).code).to.equal(0);
      const ls = JSON.parse((await ctl(t, 'ls', id!, '--json')).stdout) as { files: Array<{ filename: string }> };
      expect(ls.files.map((f) => f.filename)).to.include.members(['made.txt', 'sub']);
      const down = await agentctl(['--agent', `tcp://127.0.0.1:${t.port}`, 'download', id!, 'made.txt', '-o', path.join(dir, 'made.txt')]);
      expect(down.code, down.stderr).to.equal(0);
      expect(await fs.readFile(path.join(dir, 'made.txt'), 'utf8')).to.equal('made in the kernel');
      const back = await ctl(t, 'download', id!, 'sub/up.txt', '-o', '-');
      expect(back.stdout).to.equal('sent by agentctl');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }

    const destroyed = await ctl(t, 'destroy', id!);
    expect(destroyed.stdout).to.match(new RegExp(`^destroyed ${id}`));
    expect(await kernelIds(t.client)).to.deep.equal([]);
  });

  it("says the agent's errors in one line with the wire type, exits 1; bad flags exit 2", async () => {
    const t = await startAgent();
    const r = await ctl(t, 'ls', 'no-such-kernel');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal(
      'agentctl: no kernel with id no-such-kernel on this agent; list kernels or create it first (agent.KernelNotFound)\n',
    );
    const missing = await ctl(t, 'run', 'nosuchlang:1', 'x');
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.match(/^agentctl: image lablup\/kernel-nosuchlang:1 is not on this node.*\(agent\.ImageNotFound\)\n$/);
    const unconfirmed = await ctl(t, 'reset');
    expect(unconfirmed.code).to.equal(2);
    expect(unconfirmed.stderr).to.equal('agentctl: reset destroys every kernel of the agent; add --yes to confirm\n');
    const flag = await ctl(t, 'kernels', '--no-such-flag');
    expect(flag.code).to.equal(2);
    expect(flag.stderr.trim().split('\n')).to.have.length(1);
    const gone = await agentctl(['--agent', 'tcp://127.0.0.1:1', '--timeout', '1', 'ping']);
    expect(gone.code).to.equal(1);
    expect(gone.stderr).to.match(/^agentctl: ping got no reply within 1000 ms.*\(agent\.Timeout\)\n$/);
  });

  it('finds the agent through etcd and lists the registered agents', async () => {
    // One beat at start, then none for an hour: the record written by hand below stays.
    const t = await startAgent({}, async (ns) => {
      await ns.put('config/agent/heartbeat_interval').value('3600');
    });
    const agents = JSON.parse((await agentctl(['--namespace', t.namespace, 'agents', '--json'])).stdout) as Array<Record<string, unknown>>;
    expect(agents).to.have.length(1);
    expect(agents[0]).to.include({ id: t.agentId, status: 'running', addr: `tcp://127.0.0.1:${t.port}` });
    // the record of the agent's own first beat
    const own = await eventually(
      'the first heartbeat record',
      async () => (await t.etcd.get(`nodes/agents/${t.agentId}/heartbeat`).string()) ?? '',
    );
    expect(JSON.parse(own)).to.include({ cpu_slots: os.cpus().length, addr: `tcp://127.0.0.1:${t.port}` });
    const table = (await agentctl(['--namespace', t.namespace, 'agents'])).stdout.split('\n');
    expect(table[1]).to.match(
      new RegExp(`^${t.agentId}\\s+running\\s+tcp://127\\.0\\.0\\.1:${t.port}\\s+${os.cpus().length}\\s+\\S+\\s+\\d+s ago$`),
    );
    // a record written by hand, to check the columns
    const beat = { time: Date.now() / 1000 - 5, addr: `tcp://127.0.0.1:${t.port}`, cpu_slots: 2, mem_slots: 2048, node: {} };
    await t.etcd.put(`nodes/agents/${t.agentId}/heartbeat`).value(JSON.stringify(beat));
    const withBeat = (await agentctl(['--namespace', t.namespace, 'agents'])).stdout.split('\n');
    expect(withBeat[1]).to.match(new RegExp(`^${t.agentId}\\s+running\\s+tcp://127\\.0\\.0\\.1:${t.port}\\s+2\\s+2\\.0GiB\\s+[5-9]s ago$`));
    // without any record: dashes
    await t.etcd.delete().key(`nodes/agents/${t.agentId}/heartbeat`);
    const noBeat = (await agentctl(['--namespace', t.namespace, 'agents'])).stdout.split('\n');
    expect(noBeat[1]).to.match(new RegExp(`^${t.agentId}\\s+running\\s+tcp://127\\.0\\.0\\.1:${t.port}\\s+-\\s+-\\s+-$`));
    const ping = await agentctl(['--namespace', t.namespace, 'ping']);
    expect(ping.code, ping.stderr).to.equal(0);
    expect(ping.stdout).to.match(new RegExp(`^pong from tcp://127\\.0\\.0\\.1:${t.port} in `));
    const none = await agentctl(['--namespace', uniqueName('empty'), 'ping']);
    expect(none.code).to.equal(1);
    expect(none.stderr).to.match(/^agentctl: no agent registered in etcd .* namespace empty-\w+; start one, or give --agent/);
  });

  it('events receives the heartbeats of a running agent with no manager present, and unregisters on exit', async () => {
    const t = await startAgent();
    expect(await t.etcd.get('nodes/manager').string()).to.equal(null);
    const r = await agentctl(['--namespace', t.namespace, 'events', '--json', '--count', '3'], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).to.equal(0);
    const events = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { agent: string; event: string; args: Array<Record<string, unknown>> });
    const beats = events.filter((e) => e.event === 'instance_heartbeat');
    expect(beats.length, r.stdout).to.be.at.least(1);
    expect(beats[0]!.agent).to.equal(t.agentId);
    expect(beats[0]!.args[0]).to.include({ addr: `tcp://127.0.0.1:${t.port}` });
    expect(beats[0]!.args[0]!.images).to.include(TEST_IMAGE_LANG);
    expect(await t.etcd.get('nodes/manager').string()).to.equal(null);
    expect(await t.etcd.get('nodes/manager/event_addr').string()).to.equal(null);
  });

  it('events leaves a sink registration alone when another manager took it over', async () => {
    const namespace = uniqueName('test');
    const { ns } = testEtcd(namespace);
    const r = agentctl(['--namespace', namespace, 'events', '--count', '1'], { timeoutMs: 30_000 });
    const addr = await eventually('agentctl to register its sink', () => ns.get('nodes/manager/event_addr').string());
    await ns.put('nodes/manager').value('another-manager');
    // one event makes agentctl exit: send it like an agent would
    const zmq = await import('zeromq');
    const push = new zmq.Push({ linger: 1000 });
    push.connect(`tcp://${addr}`);
    await push.send(['instance_started', 'i-fake', Buffer.from([0x90])]);
    const done = await r;
    push.close();
    expect(done.stdout).to.match(/ i-fake instance_started\n$/);
    expect(await ns.get('nodes/manager').string()).to.equal('another-manager');
    expect(await ns.get('nodes/manager/event_addr').string()).to.equal(null);
  });
});
