/**
 * Gives big transient buffers back to the system soon after their use. A
 * download's archive and its encoded reply live outside the V8 heap, and
 * their memory returns only when a garbage collection finds them unused; an
 * agent that is idle after a download may not collect for minutes, holding
 * hundreds of MiB (measured: +600 MiB a minute after three 200 MiB
 * downloads). {@link releaseSoon} asks for one full collection a moment after
 * the last such use (debounced), so the RSS comes back near its baseline.
 */
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Seconds after the last big use before the collection. */
const DELAY_MS = 2000;
let timer: NodeJS.Timeout | null = null;
let collect: (() => void) | null | undefined;

/** The collector: `gc` exposed at run time (the same as `--expose-gc`), or none where the runtime refuses. */
function collector(): (() => void) | null {
  if (collect !== undefined) return collect;
  try {
    v8.setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  } catch {
    collect = null;
  }
  return collect;
}

/** Plans one full garbage collection shortly (a later call moves it on); never keeps the process alive. */
export function releaseSoon(): void {
  if (timer) clearTimeout(timer);
  timer = setTimeout(() => {
    timer = null;
    collector()?.();
  }, DELAY_MS);
  timer.unref();
}

/** Runs the planned collection now, if one is planned: a new big buffer first gives back what the last one left. */
export function releasePending(): void {
  if (!timer) return;
  clearTimeout(timer);
  timer = null;
  collector()?.();
}
