/**
 * `agent gpus`: what detection finds on this node, in words an operator (or
 * deploy/dev/gpu-check.sh) reads: the devices, the path containers would
 * take and why, and the Docker arguments the agent would give a kernel
 * holding the first device.
 */
import type { Accelerator, AcceleratorState, DeviceHostConfig } from './types.js';

/** The detection and the HostConfig fragment for one device, as `agent gpus --json` prints it. */
export interface GpuProbe {
  state: AcceleratorState;
  /** The Docker arguments for the first usable device; null on the CPU fallback. */
  oneDevice: DeviceHostConfig | null;
}

/** Runs a detection and builds the Docker arguments for its first device. */
export async function probeGpus(accelerator: Accelerator): Promise<GpuProbe> {
  const state = await accelerator.detect();
  const first = state.devices[0];
  return { state, oneDevice: state.path !== 'none' && first ? accelerator.hostConfig([first], state.path) : null };
}

/** The probe as text: one line per device, the path with its reason and fix, and the Docker arguments. */
export function formatProbe({ state, oneDevice }: GpuProbe): string {
  const lines = [`devices: ${state.devices.length} usable${state.excluded ? `, ${state.excluded} kept back by gpu_allow` : ''}`];
  for (const d of state.devices) {
    lines.push(
      `  ${d.index}  ${d.name}  ${d.uuid}  bus ${d.busId}  numa ${d.numaNode ?? 'any'}  ${d.memoryTotalMiB} MiB  /dev/nvidia${d.minor}`,
    );
  }
  lines.push(`path: ${state.path} (${state.reason})`);
  if (state.fix) lines.push(`${state.path === 'none' ? 'fix' : 'better'}: ${state.fix}`);
  if (oneDevice) {
    lines.push(`docker arguments for device ${state.devices[0]!.index}:`);
    for (const e of oneDevice.env) lines.push(`  --env ${e}`);
    for (const d of oneDevice.devices) lines.push(`  --device ${d.PathOnHost}:${d.PathInContainer}:${d.CgroupPermissions}`);
    for (const b of oneDevice.binds) lines.push(`  --volume ${b}`);
    for (const r of oneDevice.deviceRequests)
      lines.push(
        `  --gpus '"device=${r.DeviceIDs.join(',')}"'  (HostConfig.DeviceRequests: driver ${r.Driver}, capabilities ${JSON.stringify(r.Capabilities)})`,
      );
    if (oneDevice.runtime) lines.push(`  --runtime ${oneDevice.runtime}`);
  }
  return lines.join('\n');
}
