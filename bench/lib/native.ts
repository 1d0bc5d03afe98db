/**
 * The bench's C programs (bench/native/*.c, on Debian's libzmq3-dev): each
 * is compiled with gcc on first use in a run, into dist/bench/native/, and
 * again whenever its source is newer than the binary.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { errorMessage } from '../../src/errors.js';
import { REPO_ROOT } from './env.js';

const run = promisify(execFile);
const CC = process.env.BENCH_CC ?? 'gcc';
const built = new Map<string, Promise<string>>();

/** The path of the compiled program `name` (bench/native/<name>.c), built if missing or stale. */
export function nativeProgram(name: string): Promise<string> {
  let p = built.get(name);
  if (!p) {
    p = build(name);
    built.set(name, p);
  }
  return p;
}

async function build(name: string): Promise<string> {
  const src = path.join(REPO_ROOT, 'bench/native', `${name}.c`);
  const out = path.join(REPO_ROOT, 'dist/bench/native', name);
  const [s, o] = await Promise.all([fs.stat(src), fs.stat(out).catch(() => null)]);
  if (o && o.mtimeMs >= s.mtimeMs) return out;
  await fs.mkdir(path.dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    await run(CC, ['-O2', '-Wall', '-o', tmp, src, '-lzmq']);
    await fs.rename(tmp, out);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(
      `cannot compile ${path.relative(REPO_ROOT, src)} with ${CC} (${stderr || errorMessage(err)}): ` +
        'deploy/dev/up.sh installs gcc and libzmq3-dev',
      { cause: err },
    );
  }
  return out;
}
