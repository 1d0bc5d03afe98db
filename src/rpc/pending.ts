/**
 * PendingCalls is the book of a client's calls awaiting replies, by request
 * id (aiozmq) or seq (Callosum): each is settled once, by its reply, its
 * timeout, a send failure or the client's close, and its timer cleared.
 */

/** A call awaiting its reply. */
export interface PendingCall {
  method: string;
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export class PendingCalls {
  private readonly calls = new Map<number, PendingCall>();

  /** Number of calls waiting for a reply. */
  get size(): number {
    return this.calls.size;
  }

  add(id: number, call: PendingCall): void {
    this.calls.set(id, call);
  }

  /** Resolves (or, with `err`, rejects) the call of this id; a second settle, or an unknown id, does nothing. */
  settle(id: number, value: unknown, err?: Error): void {
    const p = this.calls.get(id);
    if (!p) return;
    this.calls.delete(id);
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(value);
  }

  /** Fails every call waiting. */
  failAll(err: () => Error): void {
    for (const id of [...this.calls.keys()]) this.settle(id, undefined, err());
  }
}
