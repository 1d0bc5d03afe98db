/**
 * The GPU fixture trees under tests/fixtures/gpu (a GPU is the one thing this
 * machine cannot have): `dgx8`, eight A100s on two NUMA nodes, and `any1`, one
 * T4 whose sysfs numa_node is -1. Each has the nvidia-smi CSV (answered by
 * its bin/nvidia-smi), the driver's /proc files, sysfs and /dev entries, and
 * an `ldconfig -p` listing.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NvidiaCuda, type NvidiaOptions } from '../../src/accelerators/nvidia.js';
import { onCleanup, REPO_ROOT } from './env.js';

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

/**
 * A copy of a fixture tree that Docker can use: its /dev entries become
 * character devices 1:3 (a /dev/null stand-in: Docker reads a real node's
 * major and minor), the libraries `ldconfig -p` lists become files of their
 * own, and nvidia-smi a script that prints the CSV wherever it is mounted
 * (and, for --query-compute-apps, `<root>/compute-apps.csv` if written).
 * Removed after the test.
 */
export async function standInTree(name: GpuFixture, overrides: NvidiaOptions = {}): Promise<{ root: string; options: NvidiaOptions }> {
  const src = fixtureRoot(name);
  const root = await fs.mkdtemp(path.join(os.tmpdir(), `gpu-${name}-`));
  onCleanup(() => fs.rm(root, { recursive: true, force: true }));
  await fs.cp(path.join(src, 'proc'), path.join(root, 'proc'), { recursive: true });
  await fs.cp(path.join(src, 'sys'), path.join(root, 'sys'), { recursive: true });
  await fs.mkdir(path.join(root, 'dev'));
  for (const node of await fs.readdir(path.join(src, 'dev'))) execFileSync('mknod', [path.join(root, 'dev', node), 'c', '1', '3']);
  const csv = await fs.readFile(path.join(src, 'nvidia-smi.csv'), 'utf8');
  await fs.mkdir(path.join(root, 'bin'));
  // Self-contained (it is also mounted into containers); --query-compute-apps prints <root>/compute-apps.csv when a test wrote one.
  const smi = `#!/bin/sh\n# stand-in nvidia-smi\ncase "$*" in\n  *--query-compute-apps*) cat ${root}/compute-apps.csv 2>/dev/null; exit 0 ;;\nesac\ncat <<'CSV'\n${csv}CSV\n`;
  await fs.writeFile(path.join(root, 'bin/nvidia-smi'), smi, { mode: 0o755 });
  const libDir = path.join(root, 'lib');
  await fs.mkdir(libDir);
  const ldconfig = (await fs.readFile(path.join(src, 'ldconfig.txt'), 'utf8')).replace(
    /=> \/usr\/lib\/x86_64-linux-gnu\/(\S+)/g,
    (_, f: string) => `=> ${libDir}/${f}`,
  );
  for (const m of ldconfig.matchAll(/=> (\S+)/g))
    if (m[1]!.startsWith(libDir)) await fs.writeFile(m[1]!, `stand-in ${path.basename(m[1]!)}\n`);
  return {
    root,
    options: {
      smi: path.join(root, 'bin/nvidia-smi'),
      procRoot: path.join(root, 'proc'),
      sysRoot: path.join(root, 'sys'),
      devRoot: path.join(root, 'dev'),
      ldconfig: async () => ldconfig,
      binDirs: [path.join(root, 'bin')],
      docker: async () => ({ runtimes: ['runc'], apiVersion: '1.41' }),
      ...overrides,
    },
  };
}
