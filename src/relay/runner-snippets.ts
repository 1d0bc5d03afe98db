/**
 * Runner snippets: what the agent has a kernel's runner run (through
 * `KernelRelay.runToEnd`) when a warm-pool claim makes a pooled
 * container a kernel. The runner this agent brings to images without one
 * takes them as its commands `%environ` and `%shells-wait` (user code may
 * run in another process there: the image's own Python, or its shell); any
 * other runner gets Python statements, which lean on how such a runner
 * works (its terminal shells are `/bin/bash -i` children of the runner
 * process; query code runs in the runner, in the user's namespace). Both
 * live with the relay that sends them.
 */

/** Python: the pids of the runner's terminal shells (`/bin/bash -i` children of the runner). */
const SHELLS = [
  'def shells():',
  '    import os',
  '    me, found = str(os.getpid()), set()',
  "    for pid in os.listdir('/proc'):",
  '        try:',
  "            with open('/proc/%s/stat' % pid) as f:",
  "                ppid = f.read().rsplit(')', 1)[1].split()[1]",
  "            with open('/proc/%s/cmdline' % pid, 'rb') as f:",
  "                if ppid == me and f.read() == b'/bin/bash\\x00-i\\x00':",
  '                    found.add(int(pid))',
  '        except (OSError, IndexError, ValueError):',
  '            pass',
  '    return found',
];

/** Python source that defines a function, calls it once and deletes it, leaving no name in the user's namespace. */
function once(name: string, params: string, body: string[], args: string): string {
  const indent = (l: string) => `    ${l}`;
  return [`def ${name}(${params}):`, ...SHELLS.map(indent), ...body.map(indent), `${name}(${args})`, `del ${name}`].join('\n');
}

/**
 * The statement that gives a claimed container's running runner the
 * kernel's environment: it updates `os.environ` (so query code, batch
 * commands and later shells see it) and hangs up the terminal's shell, which
 * was started before the claim; the runner starts a new one with the new
 * environment a moment later. It prints the pids of the old shells as JSON
 * (for {@link shellWaitStatement}). It runs in the user's namespace and leaves
 * no name there.
 */
export function environStatement(environ: Record<string, string>, commands: boolean): string {
  // JSON strings escape line ends: the command stays one line.
  if (commands) return `%environ ${JSON.stringify(environ)}`;
  const body = [
    'import os',
    'os.environ.update(env)',
    'old = shells()',
    'for pid in old:',
    '    try:',
    '        os.kill(pid, 1)',
    '    except OSError:',
    '        pass',
    'print(sorted(old))',
  ];
  // JSON string literals are Python string literals.
  return once('_compute_agent_claim', 'env', body, JSON.stringify(environ));
}

/** The statement that waits (3 s at most) until the runner has a terminal shell other than the hung-up ones. */
export function shellWaitStatement(oldShells: number[], commands: boolean): string {
  if (commands) return `%shells-wait ${JSON.stringify(oldShells)}`;
  const body = [
    'import time',
    'deadline = time.monotonic() + 3',
    'while not (shells() - set(old)) and time.monotonic() < deadline:',
    '    time.sleep(0.01)',
  ];
  return once('_compute_agent_wait', 'old', body, JSON.stringify(oldShells));
}
