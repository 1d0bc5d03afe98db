/** A manager's event sink for tests: a bound PULL socket collecting events. */
import * as zmq from 'zeromq';
import { msgpackCodec } from '../../src/wire/codec.js';
import { registerZapDomain } from '../../src/wire/zap.js';
import { onCleanup, uniqueName } from './env.js';

export interface Event {
  name: string;
  agentId: string;
  args: unknown[];
  at: number;
}

/**
 * A manager's event sink: a bound PULL socket collecting events. With
 * `curve`, it is a CURVE server admitting only the agent keys `allows` accepts.
 */
export async function sink(curve?: { secretKey: string; allows(agentKey: string): boolean }) {
  const pull = new zmq.Pull({ linger: 0 });
  if (curve) {
    pull.curveServer = true;
    pull.curveSecretKey = curve.secretKey;
    pull.zapDomain = uniqueName('sink');
    const unregister = await registerZapDomain(pull.zapDomain, { allows: curve.allows });
    onCleanup(unregister);
  }
  await pull.bind('tcp://127.0.0.1:*'); // the system's choice of port: no window for another bind to take it
  const addr = pull.lastEndpoint!.replace(/^tcp:\/\//, '');
  const events: Event[] = [];
  const arrived = new Set<() => void>();
  void (async () => {
    try {
      for await (const [name, agentId, args] of pull) {
        events.push({
          name: name!.toString('ascii'),
          agentId: agentId!.toString('utf8'),
          args: msgpackCodec.decode(args!) as unknown[],
          at: Date.now(),
        });
        for (const wake of arrived) wake();
      }
    } catch {
      // closed
    }
  })();
  onCleanup(() => void (pull.closed || pull.close()));
  /** The `nth` event named `name` that arrived at or after `after` (ms), waiting for it as it arrives. */
  const next = (name: string, after = 0, timeoutMs = 5000, nth = 1): Promise<Event> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const e = events.filter((x) => x.name === name && x.at >= after)[nth - 1];
        if (!e) return;
        arrived.delete(check);
        clearTimeout(timer);
        resolve(e);
      };
      const timer = setTimeout(() => {
        arrived.delete(check);
        reject(new Error(`no ${name} event (#${nth}) within ${timeoutMs} ms; got ${events.map((x) => x.name).join(', ')}`));
      }, timeoutMs);
      arrived.add(check);
      check();
    });
  /** The sink goes away, as a manager that stops does. */
  const close = async () => void (pull.closed || pull.close());
  return { addr, events, next, close };
}
