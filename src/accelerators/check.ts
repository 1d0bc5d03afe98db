/**
 * The GPU entry of `agent check`: which of the three paths applies on this
 * node and why. A node without the driver passes (a CPU node: the fallback
 * is what it should do); a node whose driver is there but unusable fails,
 * with the fix.
 */
import type { Accelerator } from './types.js';

/** Runs a detection and words it as a check result. */
export async function gpuCheck(accelerator: Accelerator): Promise<{ ok: boolean; detail: string; fix?: string }> {
  const s = await accelerator.detect();
  if (s.path !== 'none') {
    const names = [...new Set(s.devices.map((d) => d.name))].join(', ');
    const kept = s.excluded ? `, ${s.excluded} kept back by gpu_allow` : '';
    return { ok: true, detail: `${s.path}: ${s.devices.length} GPU(s) (${names}${kept}); ${s.reason}` };
  }
  if (!s.driverFound) return { ok: true, detail: `none: CPU fallback, gpu_slots 0 (${s.reason}); to use GPUs: ${s.fix}` };
  return { ok: false, detail: `none: CPU fallback, gpu_slots 0, although the driver is here: ${s.reason}`, fix: s.fix };
}
