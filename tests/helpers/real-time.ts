/**
 * waitRealTime is the one fixed wait the tests allow, for where the passage
 * of time itself is under test (a limit that must not fire early, a rate);
 * everything else waits on an event or a condition. `why` names what the
 * time is for, so a reader sees the wait is the point and not a guess.
 */
export function waitRealTime(ms: number, why: string): Promise<void> {
  void why; // documentation at the call site: the wait is what is tested
  return new Promise((resolve) => setTimeout(resolve, ms));
}
