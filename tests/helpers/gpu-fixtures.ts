/**
 * The GPU fixture trees under tests/fixtures/gpu (a GPU is the one thing this
 * machine cannot have): `dgx8`, eight A100s on two NUMA nodes, and `any1`, one
 * T4 whose sysfs numa_node is -1. Each has the nvidia-smi CSV (answered by
 * its bin/nvidia-smi), the driver's /proc files, sysfs and /dev entries, and
 * an `ldconfig -p` listing.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { NvidiaCuda, type NvidiaOptions } from '../../src/accelerators/nvidia.js';
import { REPO_ROOT } from './env.js';

export type GpuFixture = 'dgx8' | 'any1';

/** The root of a fixture tree. */
export function fixtureRoot(name: GpuFixture): string {
  return path.join(REPO_ROOT, 'tests/fixtures/gpu', name);
}

/** The detection options of a fixture tree: its nvidia-smi, /proc, /sys, /dev and ldconfig listing, no Docker runtime. */
export function fixtureOptions(name: GpuFixture, overrides: NvidiaOptions = {}): NvidiaOptions {
  const root = fixtureRoot(name);
  return {
    smi: path.join(root, 'bin/nvidia-smi'),
    procRoot: path.join(root, 'proc'),
    sysRoot: path.join(root, 'sys'),
    devRoot: path.join(root, 'dev'),
    ldconfig: () => fs.readFile(path.join(root, 'ldconfig.txt'), 'utf8'),
    docker: async () => ({ runtimes: ['io.containerd.runc.v2', 'runc'], apiVersion: '1.43' }),
    binDirs: [path.join(root, 'bin')],
    ...overrides,
  };
}

/** A detector on a fixture tree. */
export function fixtureCuda(name: GpuFixture, overrides: NvidiaOptions = {}): NvidiaCuda {
  return new NvidiaCuda(fixtureOptions(name, overrides));
}
