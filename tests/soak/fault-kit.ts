/**
 * Small tools of the fault soak (tests/soak/faults.ts): a driver held at
 * its next step, the holding of host ports, seeded bytes and a seeded order.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';

/** A driver held at its next step: `reached` resolves when it stops there, `release` lets it go on. */
export interface Pause {
  reached: Promise<void>;
  stopped: () => void;
  release: () => void;
  released: Promise<void>;
}

/** A new pause: set it on a kernel, await `reached`, then `release` it. */
export function pause(): Pause {
  let stopped!: () => void;
  let release!: () => void;
  const reached = new Promise<void>((r) => (stopped = r));
  const released = new Promise<void>((r) => (release = r));
  return { reached, stopped, release, released };
}

/** Listens on a port of the range on every address, as another program would; nothing when something else has it. */
export function hold(port: number): Promise<net.Server[]> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve([]));
    s.listen({ host: '0.0.0.0', port, exclusive: true }, () => resolve([s]));
  });
}

/** Bytes drawn from a seeded source, so that a replay uploads the same files. */
export function randomBytesFrom(rnd: () => number, n: number): Buffer {
  const seed = createHash('sha256').update(String(rnd())).digest();
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i += 32) createHash('sha256').update(seed).update(String(i)).digest().copy(out, i);
  return out;
}

/** A seeded shuffle of the faults: each round makes every kind once, in its own order. */
export function shuffled<T>(xs: readonly T[], rnd: () => number): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
