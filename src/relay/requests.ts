/**
 * RequestBook matches the runner's answers (completions, status probes,
 * hello, service results) to the requests that asked for them. A runner
 * that tags echoes each request's tag, so answers are matched by tag and a
 * late answer to a request that timed out finds no one and is dropped. A
 * runner that does not tag gets one request of a kind in flight at a time;
 * after a timeout, the lane waits for the late answer (dropped, so it never
 * reaches the request after it) before it sends the next request, but no
 * longer than the timed-out request's own timeout (at most 5 s): a request
 * the runner never answers (it went to a runner that died) is then taken as
 * lost. (Counting owed answers instead jammed a lane for good: each answer
 * was taken for the one before it, and each request timed out in turn.)
 */

/** The longest a lane of a runner that does not tag waits for a late answer before it sends the next request. */
const MAX_LATE_MS = 5000;

interface Waiter {
  replyType: string;
  resolve(payload: Buffer): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** One kind of answer of an untagged runner: its queue, the request in flight, and the wait for a late answer still owed. */
interface Lane {
  inflight: Waiter | null;
  waiting: Array<() => void>;
  owed: NodeJS.Timeout | null;
}

/** What the book needs of its relay. */
export interface RequestSender {
  /** Whether the runner tags (decided once the relay has synchronised). */
  tagged(): boolean;
  /** A tag no other input of this relay has. */
  newTag(): string;
  /** Sends a request record, with its tag when the runner tags. */
  send(type: string, payload: string, tag: string | null): void;
}

export class RequestBook {
  private readonly byTag = new Map<string, Waiter>();
  private readonly lanes = new Map<string, Lane>();
  /** Answers that matched no request (late, or never asked for). */
  dropped = 0;

  constructor(private readonly sender: RequestSender) {}

  /** Sends a request and resolves with the payload of its answer, or rejects with `timeout()` after `timeoutMs`. */
  request(type: string, payload: string, replyType: string, timeoutMs: number, timeout: () => Error): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.sender.tagged()) {
        const tag = this.sender.newTag();
        const w: Waiter = {
          replyType,
          resolve,
          reject,
          timer: setTimeout(() => {
            this.byTag.delete(tag);
            reject(timeout());
          }, timeoutMs),
        };
        this.byTag.set(tag, w);
        this.sender.send(type, payload, tag);
        return;
      }
      const lane = this.lane(replyType);
      const start = () => {
        const w: Waiter = {
          replyType,
          resolve,
          reject,
          timer: setTimeout(() => {
            lane.inflight = null;
            reject(timeout());
            // its answer may still come, and is not the next request's: the next one waits for it, for a while
            lane.owed = setTimeout(
              () => {
                lane.owed = null;
                this.next(lane);
              },
              Math.min(timeoutMs, MAX_LATE_MS),
            );
            lane.owed.unref();
          }, timeoutMs),
        };
        lane.inflight = w;
        this.sender.send(type, payload, null);
      };
      if (lane.inflight || lane.owed) lane.waiting.push(start);
      else start();
    });
  }

  /** Gives an answer to its request; false when it belongs to none (it is dropped and counted). */
  answer(replyType: string, tag: string | undefined, payload: Buffer): boolean {
    if (tag !== undefined) {
      const w = this.byTag.get(tag);
      if (!w || w.replyType !== replyType) {
        this.dropped++;
        return false;
      }
      this.byTag.delete(tag);
      clearTimeout(w.timer);
      w.resolve(payload);
      return true;
    }
    const lane = this.lanes.get(replyType);
    if (lane?.owed) {
      // the late answer of the request that timed out: dropped, and the next request goes
      clearTimeout(lane.owed);
      lane.owed = null;
      this.dropped++;
      this.next(lane);
      return false;
    }
    if (!lane?.inflight) {
      this.dropped++;
      return false;
    }
    const w = lane.inflight;
    lane.inflight = null;
    clearTimeout(w.timer);
    w.resolve(payload);
    this.next(lane);
    return true;
  }

  /** Fails every request waiting (the runner that was asked is gone); late answers owed are forgotten. */
  failAll(err: () => Error): void {
    for (const w of this.byTag.values()) {
      clearTimeout(w.timer);
      w.reject(err());
    }
    this.byTag.clear();
    for (const lane of this.lanes.values()) {
      if (lane.owed) clearTimeout(lane.owed);
      lane.owed = null;
      if (lane.inflight) {
        clearTimeout(lane.inflight.timer);
        lane.inflight.reject(err());
        lane.inflight = null;
      }
      this.next(lane);
    }
  }

  private lane(replyType: string): Lane {
    let lane = this.lanes.get(replyType);
    if (!lane) this.lanes.set(replyType, (lane = { inflight: null, waiting: [], owed: null }));
    return lane;
  }

  private next(lane: Lane): void {
    lane.waiting.shift()?.();
  }
}
