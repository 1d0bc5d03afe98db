/**
 * A logger whose lines a test reads: an in-process agent started with
 * `capturedLog().logger` logs JSON lines into `lines`, and `waitFor` resolves
 * on the first line (already there or still to come) that matches, so a
 * test asserts what the agent said and waits for it instead of for time.
 */
import { PassThrough } from 'node:stream';
import { createLogger, type Logger } from '../../src/log.js';

export interface CapturedLog {
  logger: Logger;
  /** Every line logged so far, as written (JSON). */
  lines: string[];
  /** Resolves with the first line matching `pattern`; fails naming it after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

export function capturedLog(level: 'debug' | 'info' = 'info'): CapturedLog {
  const lines: string[] = [];
  const listeners = new Set<() => void>();
  const stream = new PassThrough();
  stream.on('data', (b: Buffer) => {
    lines.push(...b.toString('utf8').split('\n').filter(Boolean));
    for (const l of listeners) l();
  });
  return {
    logger: createLogger({ level, format: 'json', stream }),
    lines,
    waitFor(pattern, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const line = lines.find((l) => pattern.test(l));
          if (line === undefined) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolve(line);
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(
            new Error(
              `no log line matched ${pattern} within ${timeoutMs} ms; the last of ${lines.length} lines:\n${lines.slice(-5).join('\n')}`,
            ),
          );
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
  };
}
