/**
 * `agentctl attach <kernel-id>`: an interactive terminal into a kernel's
 * shell through the agent's relay (terminal_write / terminal_read long poll /
 * terminal_resize), so it works where the kernel's ports are not reachable.
 * On a TTY the local terminal is put in raw mode (Ctrl-C, Tab, arrows go to
 * the kernel) and the window size is followed; Ctrl-] detaches. The terminal
 * is restored on every way out.
 */
import type { Argv } from 'yargs';
import type { AgentApi } from '../../rpc/api.js';
import { action, connect, type GlobalArgs } from './common.js';

/** The detach key: Ctrl-] (0x1d), as telnet has it. */
export const DETACH_BYTE = 0x1d;
/** How long one terminal_read waits for output, in seconds. */
const POLL_SEC = 2;

/** Registers `attach` on the agentctl parser. */
export function attachCommand(y: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return y.command(
    'attach <kernel-id>',
    "open an interactive terminal into a kernel's shell (detach with Ctrl-])",
    (c) => c.positional('kernel-id', { type: 'string', demandOption: true }),
    action<GlobalArgs & { kernelId: string }>(async (argv) => {
      const api = await connect(argv);
      try {
        return await attach(api, argv.kernelId);
      } finally {
        api.close();
      }
    }),
  );
}

async function attach(api: AgentApi, kernelId: string): Promise<number> {
  // Fails here (kernel unknown, agent unreachable) before the terminal is touched.
  let cursor = (await api.terminalRead(kernelId, 0, 0)).cursor;
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  const restore = () => {
    if (tty && stdin.isRaw) stdin.setRawMode(false);
  };
  process.on('exit', restore);

  let done!: (result: { error?: unknown }) => void;
  const finished = new Promise<{ error?: unknown }>((resolve) => (done = resolve));
  let closed = false;
  const finish = (result: { error?: unknown } = {}) => {
    if (closed) return;
    closed = true;
    done(result);
  };

  // Keys -> kernel, one write at a time so that they arrive in order.
  let writes: Promise<unknown> = Promise.resolve();
  const send = (data: Buffer) => {
    writes = writes.then(() => api.terminalWrite(kernelId, data)).catch((err: unknown) => finish({ error: err }));
  };
  const onData = (chunk: Buffer) => {
    const at = chunk.indexOf(DETACH_BYTE);
    if (at >= 0) {
      if (at > 0) send(chunk.subarray(0, at));
      void writes.then(() => finish());
      return;
    }
    send(chunk);
  };
  const onEnd = () => void writes.then(() => finish());

  const resize = () => {
    const { rows, columns } = process.stdout;
    if (rows && columns) api.terminalResize(kernelId, rows, columns).catch(() => undefined); // a lost resize is not worth ending the session
  };
  const onSignal = () => finish();

  process.stderr.write(`agentctl: attached to kernel ${kernelId}; detach with Ctrl-]\r\n`);
  if (tty) stdin.setRawMode(true);
  stdin.on('data', onData);
  stdin.on('end', onEnd);
  stdin.resume();
  if (process.stdout.isTTY) {
    process.stdout.on('resize', resize);
    resize();
  }
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);

  // Kernel -> screen: a long-poll loop from the cursor.
  void (async () => {
    while (!closed) {
      try {
        const chunk = await api.terminalRead(kernelId, cursor, POLL_SEC);
        if (closed) break;
        if (chunk.dropped > 0) process.stderr.write(`\r\n[agentctl: ${chunk.dropped} bytes of output were lost]\r\n`);
        if (chunk.data.length) process.stdout.write(chunk.data);
        cursor = chunk.cursor;
      } catch (err) {
        finish({ error: err });
      }
    }
  })();

  const result = await finished;
  stdin.off('data', onData);
  stdin.off('end', onEnd);
  stdin.pause();
  process.stdout.off('resize', resize);
  process.off('SIGTERM', onSignal);
  process.off('SIGHUP', onSignal);
  restore();
  process.off('exit', restore);
  if (result.error !== undefined) {
    process.stderr.write('\r\n');
    throw result.error;
  }
  process.stderr.write(`\r\nagentctl: detached from kernel ${kernelId}\n`);
  return 0;
}
