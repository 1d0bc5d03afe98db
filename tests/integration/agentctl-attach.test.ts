/**
 * `agentctl attach` in a real terminal: a tmux server of its own runs it,
 * send-keys types, capture-pane reads the screen. The server is killed in
 * cleanup.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { AGENTCTL_BIN } from '../helpers/ctl.js';
import { eventually, kernelIds, onCleanup, requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';

const run = promisify(execFile);

/** A tmux server on a socket of its own, killed after the test. */
function tmuxServer() {
  const socket = uniqueName('agentctl-test');
  const tmux = async (...args: string[]) => (await run('tmux', ['-L', socket, ...args])).stdout;
  onCleanup(() =>
    tmux('kill-server').then(
      () => undefined,
      () => undefined,
    ),
  );
  return { tmux, screen: () => tmux('capture-pane', '-p', '-J', '-t', 'main') };
}

describe('agentctl attach', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('types into the kernel shell under tmux, follows the window size, and detaches with Ctrl-]', async () => {
    const t = await startAgent();
    const id = uniqueName('k');
    await t.client.callWithTimeout(60_000, methods.create_kernel, id, { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 256 } });
    const { tmux, screen } = tmuxServer();
    const cmd = `${process.execPath} ${AGENTCTL_BIN} --agent tcp://127.0.0.1:${t.port} attach ${id}; echo "agentctl exited with $?"; sleep 600`;
    await tmux('new-session', '-d', '-s', 'main', '-x', '100', '-y', '30', cmd);
    await eventually('agentctl to attach', async () => (await screen()).includes('attached to kernel'), 30_000, 200);

    await tmux('send-keys', '-t', 'main', 'echo $((2+3))', 'Enter');
    await eventually('the shell to print 5', async () => /^5\s*$/m.test(await screen()), 30_000, 200);

    await tmux('send-keys', '-t', 'main', 'stty size', 'Enter');
    await eventually('the kernel terminal to have the window size', async () => /^30 100\s*$/m.test(await screen()), 30_000, 200);
    await tmux('resize-window', '-t', 'main', '-x', '90', '-y', '25');
    await eventually(
      'the kernel terminal to follow the resize',
      async () => {
        await tmux('send-keys', '-t', 'main', 'stty size', 'Enter');
        // The answer to this stty, if the size has arrived; else the next try asks again.
        return eventually('stty to answer 25 90', async () => /^25 90\s*$/m.test(await screen()), 1000, 100).catch(() => false);
      },
      30_000,
      500,
    );

    await tmux('send-keys', '-t', 'main', 'C-]');
    const after = await eventually(
      'agentctl to detach and exit 0',
      async () => {
        const s = await screen();
        return s.includes('agentctl exited with 0') ? s : '';
      },
      15_000,
      200,
    );
    expect(after).to.contain(`detached from kernel ${id}`);
    expect(await kernelIds(t.client)).to.deep.equal([id]); // detaching keeps the kernel
  });

  it('fails in one line for an unknown kernel without touching the terminal', async () => {
    const t = await startAgent();
    const { tmux, screen } = tmuxServer();
    const cmd = `${process.execPath} ${AGENTCTL_BIN} --agent tcp://127.0.0.1:${t.port} attach nope; echo "agentctl exited with $?"; sleep 600`;
    await tmux('new-session', '-d', '-s', 'main', '-x', '100', '-y', '30', cmd);
    const s = await eventually(
      'agentctl to exit',
      async () => {
        const text = await screen();
        return text.includes('exited with') ? text : '';
      },
      15_000,
      200,
    );
    expect(s).to.contain('agentctl: no kernel with id nope on this agent; list kernels or create it first (agent.KernelNotFound)');
    expect(s).to.contain('agentctl exited with 1');
  });
});
