/** The terminal through the agent's relay, for clients that cannot reach the kernel's ports. */
import { expect } from 'chai';
import type { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import { requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';

/** Reads the terminal from `cursor` until the text matches; returns what was read and the next cursor. */
async function readUntil(client: AgentClient, id: string, cursor: number, re: RegExp, timeoutMs = 15_000) {
  let text = '';
  const deadline = Date.now() + timeoutMs;
  while (!re.test(text)) {
    if (Date.now() > deadline) throw new Error(`terminal output did not match ${re}; got ${JSON.stringify(text)}`);
    const chunk = await client.call(methods.terminal_read, id, cursor, 1);
    text += chunk.data.toString('utf8');
    cursor = chunk.cursor;
  }
  return { text, cursor };
}

describe('terminal through the agent', function () {
  this.timeout(60_000);
  before(requireEtcd);

  it('runs a command typed into the shell and follows a resize', async () => {
    const { client } = await startAgent();
    const id = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, id, { lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 256 } });
    let cursor = (await client.call(methods.terminal_read, id, 0, 0)).cursor;
    await client.call(methods.terminal_write, id, Buffer.from('echo hi-$((2+3))\n'));
    ({ cursor } = await readUntil(client, id, cursor, /hi-5/));

    await client.callWithTimeout(30_000, methods.terminal_resize, id, 30, 100);
    await client.call(methods.terminal_write, id, Buffer.from('stty size\n'));
    await readUntil(client, id, cursor, /30 100/);

    const stale = await client.call(methods.terminal_read, id, 0, 0);
    expect(stale.dropped).to.equal(0); // well within the scrollback
    expect(stale.data.toString()).to.contain('hi-5');
  });
});
