/**
 * Hostile user code against the channel between the kernel runner and the
 * child that runs user code in the image's Python (docs/running-code.rst,
 * "User code in the image's Python"): it finds none of the runner's sockets,
 * its subprocesses inherit no channel, and garbage, forged or empty messages
 * and a closed channel end at most its own run, never the runner.
 */
import { expect } from 'chai';
import { eventually } from '../helpers/env.js';
import { json, type Kernel, startKernel } from '../helpers/runner-kernel.js';

const USER_PYTHON = ['CA_USER_PYTHON=/usr/bin/python3'];

/** Python that sets `ch` to the fd of the child's channel (its only socket). */
const FIND_CHANNEL = [
  'import os',
  "socks = [int(f) for f in os.listdir('/proc/self/fd') if os.path.exists('/proc/self/fd/' + f) and os.readlink('/proc/self/fd/' + f).startswith('socket:')]",
  'ch = socks[0]',
].join('\n');

async function generation(k: Kernel): Promise<string> {
  k.mark();
  await k.send('hello');
  return json(await k.next('hello')).generation as string;
}

describe('user code against the runner of its child interpreter', function () {
  this.timeout(60_000);

  it("holds no runner socket; its subprocesses get fds 0-2 only; the runner's fds are closed to it", async () => {
    const k = await startKernel({ env: USER_PYTHON });
    const r = await k.run(
      'code',
      [
        FIND_CHANNEL,
        'print(len(socks))',
        "print(' '.join(sorted(os.popen('ls /proc/self/fd').read().split())))",
        'try:',
        "    os.listdir('/proc/%d/fd' % os.getppid())",
        "    print('runner fds open')",
        'except PermissionError:',
        "    print('runner fds closed')",
      ].join('\n'),
    );
    // one socket: the channel itself (the runner's ZeroMQ sockets stay in the runner); `ls` sees 0-2 and its own directory fd
    expect(r).to.include({ stdout: '1\n0 1 2 3\nrunner fds closed\n', stderr: '', exitCode: 0 });
  });

  it('garbage, empty, oversized and forged messages end no run but their own and leave the runner as it was', async () => {
    const k = await startKernel({ env: USER_PYTHON });
    const gen = await generation(k);
    await k.run('code', 'kept = 7');
    const forged = [
      "b''",
      "b'\\xff' * 100",
      "b'jnot json'",
      "b'j[1,2]'",
      'b\'j{"op":"done","id":"x","exitCode":0}\'',
      'b\'j{"op":"done","id":999999,"exitCode":0}\'',
      'b\'j{"op":"completion","id":[1],"matches":5}\'',
      'b\'j{"op":"completion","id":1,"matches":[1,null,"forged"]}\'',
      'b\'j{"op":"input","id":{},"req":[]}\'',
      "b'j' + b'{' * 150000",
      "b'x' * 100",
    ];
    const r = await k.run(
      'code',
      [
        FIND_CHANNEL,
        `for m in [${forged.join(', ')}]:`,
        '    try:',
        '        os.write(ch, m)',
        '    except OSError:',
        '        pass',
        'for i in range(2000):',
        '    os.write(ch, b\'j{"op":"done","id":%d,"exitCode":0}\' % (10 ** 6 + i))',
        'print("forged", kept, len(socks))',
      ].join('\n'),
    );
    expect(r).to.include({ stdout: 'forged 7 1\n', exitCode: 0 });
    // the runner read them (and said so in its log), and took none as a message
    await eventually('the runner to log what it ignored', async () =>
      (await k.container.logs({ stdout: true, stderr: true }))
        .toString('utf8')
        .includes('ignoring a malformed message from the user-code process'),
    );
    // the same child, its state and the runner
    expect(await k.run('code', 'print(kept)')).to.include({ stdout: '7\n', exitCode: 0 });
    k.mark();
    await k.send('complete', JSON.stringify({ code: 'kep' }));
    expect(json(await k.next('completion'))).to.deep.equal(['kept']);
    expect(await generation(k)).to.equal(gen);
  });

  it('a channel closed or shut by user code ends that run with a clear line; the next run gets a fresh child', async () => {
    const k = await startKernel({ env: USER_PYTHON });
    const gen = await generation(k);
    for (const how of ['os.close(ch)', 'import socket\nsocket.socket(fileno=ch).shutdown(socket.SHUT_WR)']) {
      await k.run('code', 'kept = 1');
      const r = await k.run('code', `${FIND_CHANNEL}\nprint("closing")\n${how}\nprint("after")`, 15_000);
      expect(r.stdout).to.include('closing\n');
      expect(r.exitCode).to.not.equal(0);
      expect(r.stderr).to.include('the Python process of user code').and.include('the next run starts a fresh one');
      expect(await k.run('code', 'print("kept" in globals())')).to.include({ stdout: 'False\n', exitCode: 0 });
    }
    expect(await generation(k)).to.equal(gen);
  });
});
