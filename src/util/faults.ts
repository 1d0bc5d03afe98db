/**
 * Named fault points: places in the creation, restart and destruction of a
 * kernel where a test can make the agent die (SIGKILL) or fail (throw), to
 * drill what the next start recovers (docs/kernels.rst, "What survives
 * what"). A test hook only: armed through the AGENT_FAULTS environment
 * variable (`restart.after-new-ready=kill,destroy.after-container-removed=throw`),
 * unset in production, where each point costs one lookup.
 */

/** Every fault point, declared once; the code names them through {@link faultPoint}. */
export const FAULT_POINTS = [
  'create.after-home-made',
  'restart.after-new-created',
  'restart.after-new-ready',
  'restart.after-old-removed',
  'destroy.after-container-removed',
] as const;

type FaultPoint = (typeof FAULT_POINTS)[number];

/** Reads AGENT_FAULTS: point name to action; an unknown point or action is refused, so that a drill cannot arm nothing by a typo. */
function armed(): Map<string, string> {
  const out = new Map<string, string>();
  for (const item of (process.env.AGENT_FAULTS ?? '').split(',').filter(Boolean)) {
    const [name = '', action = ''] = item.split('=');
    if (!(FAULT_POINTS as readonly string[]).includes(name) || !['kill', 'throw'].includes(action))
      throw new Error(`AGENT_FAULTS: "${item}" is not <point>=kill|throw with a point of ${FAULT_POINTS.join(', ')}`);
    out.set(name, action);
  }
  return out;
}

/** A fault point: nothing unless AGENT_FAULTS arms it; then the process is SIGKILLed there, or the step throws. */
export async function faultPoint(name: FaultPoint): Promise<void> {
  if (!process.env.AGENT_FAULTS) return;
  const action = armed().get(name);
  if (action === 'kill') {
    process.kill(process.pid, 'SIGKILL');
    await new Promise(() => undefined); // the signal lands before anything else runs
  }
  if (action === 'throw') throw new Error(`fault point ${name} armed (AGENT_FAULTS)`);
}
