/** Running code in a kernel through the agent, for the tests that need a run's output. */
import type { AgentClient } from '../../src/rpc/client.js';
import { methods } from '../../src/rpc/methods.js';
import { type RunResult } from '../../src/rpc/results.js';

/** How a test run is made: the api version, execute's flush timeout (seconds), and each call's timeout. */
export interface RunOptions {
  api?: number;
  flush?: number;
  timeoutMs?: number;
}

/** Runs code in query mode and drives `continue` until the run finishes; returns every reply. */
export async function runToEnd(
  client: AgentClient,
  id: string,
  code: string,
  { api = 2, flush, timeoutMs = 30_000 }: RunOptions = {},
): Promise<RunResult[]> {
  const replies: RunResult[] = [];
  const flushArg = (flush === undefined ? [] : [flush]) as [];
  let r = await client.callWithTimeout(timeoutMs, methods.execute, api, id, null, 'query', code, {}, ...flushArg);
  replies.push(r);
  while (r.status === 'continued' || r.status === 'build-finished') {
    r = await client.callWithTimeout(timeoutMs, methods.execute, api, id, r.runId, 'continue', '', {});
    replies.push(r);
  }
  return replies;
}

/** The text a run wrote to one stream (`stdout` or `stderr`). */
export const consoleText = (replies: RunResult[], stream: string): string =>
  replies.flatMap((r) => (r.console ?? []).filter((e) => e[0] === stream).map((e) => e[1] as string)).join('');
