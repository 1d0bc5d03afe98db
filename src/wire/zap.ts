/**
 * The process-wide ZAP handler (ZeroMQ RFC 27) that admits CURVE clients by
 * their public key. libzmq asks the REP socket bound to
 * `inproc://zeromq.zap.01` of a context about every CURVE handshake, and only
 * one such socket can bind per context, while tests run several agents in one
 * process: so there is one handler, and each CURVE server registers a ZAP
 * domain of its own with its allow-list. A request for a domain nobody
 * registered is refused.
 *
 * libzmq admits every CURVE client when no handler is bound, so a server must
 * register (which binds the handler) before it binds its own endpoint.
 */
import * as zmq from 'zeromq';
import { z85Encode } from './z85.js';

const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';

/** A ZAP domain's policy: whether a client key (Z85) may connect; `onRefused` counts refusals. */
export interface ZapPolicy {
  allows(publicKeyZ85: string): boolean;
  onRefused?(publicKeyZ85: string, address: string): void;
  onAdmitted?(publicKeyZ85: string): void;
  /** The handler failed (a policy threw, or the socket did on an open socket); the server logs it. */
  onFailure?(err: unknown): void;
}

const domains = new Map<string, ZapPolicy>();
let socket: zmq.Reply | null = null;
let loop: Promise<void> | null = null;
/** Resolves once the handler's socket is bound; every registration waits for it. */
let bound: Promise<void> | null = null;
/**
 * Resolves once the last closed handler has given the endpoint back. Closing
 * alone frees an inproc name only later, in libzmq's reaper thread, and a
 * bind before that fails with EADDRINUSE; an unbind frees it when it resolves.
 */
let released: Promise<void> = Promise.resolve();

/**
 * Registers a domain's policy, binding the handler if it is the first;
 * resolves once the handler is bound. Returns the function that removes it
 * (the handler closes with the last domain).
 */
export async function registerZapDomain(domain: string, policy: ZapPolicy): Promise<() => Promise<void>> {
  if (domains.has(domain)) throw new Error(`ZAP domain ${domain} is already registered`);
  domains.set(domain, policy);
  if (!socket) {
    const s = new zmq.Reply({ linger: 0 });
    socket = s;
    bound = released
      .then(() => s.bind(ZAP_ENDPOINT))
      .then(
        () => {
          loop = serve(s);
        },
        (err: unknown) => {
          socket = null;
          bound = null;
          s.close();
          throw err;
        },
      );
  }
  try {
    await bound; // a second registration must not return before the first one's bind is done
  } catch (err) {
    domains.delete(domain);
    throw err;
  }
  return async () => {
    if (domains.get(domain) !== policy) return;
    domains.delete(domain);
    if (domains.size === 0 && socket) {
      const s = socket;
      const l = loop;
      socket = null;
      loop = null;
      bound = null;
      released = s.unbind(ZAP_ENDPOINT).then(
        () => s.close(),
        () => s.close(),
      );
      await released;
      await l;
    }
  };
}

/** The domains registered now (for tests). */
export function zapDomains(): string[] {
  return [...domains.keys()];
}

async function serve(s: zmq.Reply): Promise<void> {
  try {
    for await (const frames of s) await s.send(answerSafely(frames));
  } catch (err) {
    // close() ends the loop (the normal end); on an open socket the handler is gone and CURVE clients cannot connect: say so.
    if (!s.closed) failed(err);
  }
}

/** Answers a request; a policy that throws refuses the client (500) and is reported, and the handler goes on. */
function answerSafely(frames: Buffer[]): Buffer[] {
  try {
    return answer(frames);
  } catch (err) {
    failed(err);
    return [
      Buffer.from('1.0'),
      frames[1] ?? Buffer.alloc(0),
      Buffer.from('500'),
      Buffer.from('internal error'),
      Buffer.alloc(0),
      Buffer.alloc(0),
    ];
  }
}

function failed(err: unknown): void {
  for (const p of domains.values()) p.onFailure?.(err);
}

/**
 * Answers one ZAP request: `[version, request id, domain, address, identity,
 * mechanism, credentials...]` -> `[version, request id, status, text, user id, metadata]`.
 */
export function answer(frames: Buffer[]): Buffer[] {
  const [version, requestId, domain, address, , mechanism, key] = frames;
  const reply = (code: string, text: string, user = '') => [
    Buffer.from('1.0'),
    requestId ?? Buffer.alloc(0),
    Buffer.from(code),
    Buffer.from(text),
    Buffer.from(user),
    Buffer.alloc(0),
  ];
  if (version?.toString() !== '1.0') return reply('500', 'unsupported ZAP version');
  const policy = domains.get(domain?.toString() ?? '');
  if (mechanism?.toString() !== 'CURVE' || !key || key.length !== 32 || !policy) return reply('400', 'not allowed');
  const z85 = z85Encode(key);
  if (policy.allows(z85)) {
    policy.onAdmitted?.(z85);
    return reply('200', 'OK', z85);
  }
  policy.onRefused?.(z85, address?.toString() ?? '');
  return reply('400', 'key not allowed');
}
