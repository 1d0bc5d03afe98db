/**
 * What an image says of itself through its labels (`ai.backend.*` wins over
 * `io.sorna.*`): features, the variables that get core and GPU counts, GPUs,
 * the exec timeout, its service ports and whether it carries a runner.
 */
import { parseServicePorts, type ServiceDecls } from './service-ports.js';
import { runnerPlan, type RunnerPlan } from './runner-env.js';

/** What the image says of itself (`ai.backend.*` wins over `io.sorna.*`). */
export interface ImageTraits {
  features: Set<string>;
  coreCountEnvs: string[];
  /** Variables that get the kernel's GPU count (`envs.gpucount`). */
  gpuCountEnvs: string[];
  /** The image opts in to NVIDIA GPUs: `io.sorna.nvidia.enabled=yes` or `ai.backend.accelerators` naming cuda. */
  cuda: boolean;
  execTimeoutSec: number;
  /** The apps of `ai.backend.service-ports` (src/containers/service-ports.ts), or why the label is refused. */
  services: ServiceDecls;
  /** Whether the image carries its runner, else how the injected runner runs user code ({@link runnerPlan}). */
  runner: RunnerPlan;
}

/** Reads the kernel-related labels of an image. */
export function imageTraits(labels: Record<string, string>): ImageTraits {
  const get = (name: string) => labels[`ai.backend.${name}`] ?? labels[`io.sorna.${name}`] ?? '';
  const timeout = Number(get('timeout'));
  const names = (v: string) =>
    v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  return {
    features: new Set(get('features').split(/\s+/).filter(Boolean)),
    coreCountEnvs: names(get('envs.corecount')),
    gpuCountEnvs: names(get('envs.gpucount')),
    cuda:
      labels['io.sorna.nvidia.enabled']?.trim().toLowerCase() === 'yes' || names(labels['ai.backend.accelerators'] ?? '').includes('cuda'),
    execTimeoutSec: Number.isFinite(timeout) && timeout > 0 ? timeout : 0,
    services: parseServicePorts(labels),
    runner: runnerPlan(labels),
  };
}
