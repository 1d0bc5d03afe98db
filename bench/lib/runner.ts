/**
 * Talking to a kernel runner straight on its published ports (PROTOCOL.md
 * section 4), with the agent's own KernelRelay: both sides of the cold
 * creation figure wait for the runner through this, and it is the "direct"
 * side of the execute figure.
 */
import { KernelRelay } from '../../src/relay/kernel-relay.js';
import { silentLogger } from '../../src/log.js';

/** A relay to a runner at `host` on its published repl ports, with no exec timeout and no output-file listing. */
export function directRelay(host: string, replInPort: number, replOutPort: number): KernelRelay {
  return new KernelRelay({
    host,
    replInPort,
    replOutPort,
    log: silentLogger(),
    execTimeoutSec: 0,
    onExecTimeout: () => {},
    outputFiles: async () => [],
  });
}

/** Resolves when the runner answers `%ping` (the runner binds its ports a moment after its container starts). */
export async function runnerAnswers(host: string, replInPort: number, replOutPort: number): Promise<void> {
  const relay = directRelay(host, replInPort, replOutPort);
  try {
    await relay.ping();
  } finally {
    relay.close();
  }
}
