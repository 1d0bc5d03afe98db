/** Running code in a kernel through the agent, for the tests that need a run's output. */
import type { AgentClient } from '../../src/rpc/client.js';
import { methods, type RunResult } from '../../src/rpc/methods.js';

/** Runs code in query mode and drives `continue` until the run finishes; returns every reply. */
export async function runToEnd(client: AgentClient, id: string, code: string, timeoutMs = 30_000): Promise<RunResult[]> {
  const replies: RunResult[] = [];
  let r = await client.callWithTimeout(timeoutMs, methods.execute, 2, id, null, 'query', code, {});
  replies.push(r);
  while (r.status === 'continued' || r.status === 'build-finished') {
    r = await client.callWithTimeout(timeoutMs, methods.execute, 2, id, r.runId, 'continue', '', {});
    replies.push(r);
  }
  return replies;
}

/** The text a run wrote to one stream (`stdout` or `stderr`). */
export const consoleText = (replies: RunResult[], stream: string): string =>
  replies.flatMap((r) => (r.console ?? []).filter((e) => e[0] === stream).map((e) => e[1] as string)).join('');
