/**
 * The preflight checklist of `agent check`: everything the agent needs
 * before it is run for real (etcd, its namespace and settings, the scratch
 * root, Docker, kernel images, the RPC port, cgroup controllers, whether
 * hostfile scratch homes can work). Each check
 * answers {name, ok, detail, fix}; a failure's fix says what to do in one
 * line. A new check is one more entry appended to {@link CHECKS}.
 */
import { existsSync, promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { checkScratchRoot } from '../../config/options.js';
import { compileSettings, defaultSettings, type CompiledSettings } from '../../config/settings.js';
import type { EtcdStore } from '../../adapters/etcd.js';
import { judgeCluster } from '../../services/cluster-health.js';
import { errorMessage, EtcdUnavailableError } from '../../errors.js';
import { agentFieldKey, agentKey, EVENT_ADDR_KEY, settingPrefixes } from '../../config/etcd-keys.js';
import { securityFindings } from '../../config/security.js';
import { gpuCheck } from '../../accelerators/check.js';
import { NvidiaCuda } from '../../accelerators/nvidia.js';
import { PREP_CHECKS } from './prep-checks.js';
import { NETWORK_CHECK, SWARM_CHECK } from './network-check.js';
import type { Check, CheckContext, CheckResult } from './types.js';
import { hostfileProblems, MOUNT_RIGHTS } from '../../scratch/mounts.js';

/** How long one check may take before it counts as failed. */
export const CHECK_TIMEOUT_MS = 10_000;

/** A heartbeat younger than this means an agent with the same id is alive. */
const ALIVE_WITHIN_SEC = 30;

const pass = (detail: string) => ({ ok: true, detail });
const fail = (detail: string, fix: string) => ({ ok: false, detail, fix });

/** The checklist, in the order it is printed; append an entry to add a check. */
export const CHECKS: Check[] = [
  {
    name: 'etcd reachable',
    fix: 'start etcd, or fix --etcd-addr / BACKEND_ETCD_ADDR',
    async run({ etcd }) {
      try {
        return pass(`${etcd.where} answers (etcd ${await etcd.serverVersion()})`);
      } catch (err) {
        const reason = err instanceof EtcdUnavailableError ? err.reason : errorMessage(err).slice(0, 120);
        return fail(`etcd does not answer at ${etcd.where} (${reason})`, 'start etcd, or fix --etcd-addr / BACKEND_ETCD_ADDR');
      }
    },
  },
  {
    name: 'etcd cluster health',
    fix: 'make etcd reachable first',
    after: 'etcd reachable',
    async run({ etcd }) {
      return judgeCluster(await etcd.memberStatuses());
    },
  },
  {
    name: 'etcd namespace and settings',
    fix: 'make etcd reachable first',
    after: 'etcd reachable',
    async run({ etcd, settings }) {
      const { problems, unknown } = await settings();
      if (problems.length > 0) {
        const p = problems[0]!;
        return fail(
          `${etcd.prefix}${p.source}: ${p.message}`,
          `fix or delete it: etcdctl put ${etcd.prefix}${p.source} <value> (docs/reference/settings.rst lists the settings)`,
        );
      }
      const sink = await etcd.get(EVENT_ADDR_KEY);
      const parts = [
        `${etcd.prefix} readable`,
        sink ? `manager event sink ${sink}` : 'no manager event sink yet (events wait for nodes/manager/event_addr)',
      ];
      if (unknown.length > 0) parts.push(`unknown keys ignored: ${unknown.join(', ')}`);
      return pass(parts.join('; '));
    },
  },
  {
    name: 'security settings',
    fix: 'make etcd reachable first',
    after: 'etcd namespace and settings',
    async run({ settings }) {
      const findings = securityFindings((await settings()).settings);
      if (!findings.length) return pass('every protection is on (CURVE RPC, kernel lock-down)');
      return {
        ok: true,
        detail: `${findings.length} protection(s) turned off: ${findings.map((f) => f.name).join(', ')}`,
        warnings: findings.map((f) => `${f.name}: ${f.detail}; fix: ${f.fix}`),
      };
    },
  },
  {
    name: 'agent id free',
    fix: 'make etcd reachable first',
    after: 'etcd reachable',
    async run({ etcd, options }) {
      const state = await etcd.get(agentKey(options.agentId));
      if (state === null) return pass(`no agent registered as ${options.agentId}`);
      const beat = parseBeat(await etcd.get(agentFieldKey(options.agentId, 'heartbeat')));
      const age = beat ? Math.round(Date.now() / 1000 - beat.time) : null;
      if (age !== null && age < ALIVE_WITHIN_SEC) {
        return fail(
          `an agent registered as ${options.agentId} is alive (${state}, last heartbeat ${age} s ago from ${beat!.addr})`,
          'stop that agent first, or give this one another --agent-id / BACKEND_AGENT_ID',
        );
      }
      return pass(
        `a stale registration of ${options.agentId} (${state}) is left from an agent that did not stop cleanly; it is overwritten at start`,
      );
    },
  },
  {
    name: 'scratch root writable',
    fix: 'create it and make it writable for the agent',
    async run({ options }) {
      const dir = await checkScratchRoot(options.scratchRoot).catch((err: unknown) => {
        const msg = errorMessage(err).replace(/: (create|fix).*$/, '');
        const where = 'or point --scratch-root / BACKEND_SCRATCH_ROOT elsewhere';
        if (/does not exist/.test(msg)) throw new CheckFailure(msg, `create it (mkdir -p ${options.scratchRoot}) ${where}`);
        if (/EROFS/.test(msg)) throw new CheckFailure(msg, `it is on a read-only mount: remount it read-write ${where}`);
        throw new CheckFailure(msg, `give the agent's user write access (chown or chmod ${options.scratchRoot}) ${where}`);
      });
      const st = await fs.statfs(dir);
      return pass(`${dir} (${gib(st.bavail * st.bsize)} free of ${gib(st.blocks * st.bsize)})`);
    },
  },
  {
    name: 'Docker reachable',
    fix: 'start dockerd',
    async run({ docker }) {
      try {
        return pass(`Docker ${await docker.version()}`);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const where = process.env.DOCKER_HOST ?? '/var/run/docker.sock';
        if (code === 'EACCES')
          return fail(
            `permission denied on ${where}`,
            'run the agent as root or add its user to the docker group (usermod -aG docker <user>), then log in again',
          );
        return fail(
          `Docker does not answer at ${where}: ${errorMessage(err)}`,
          'start dockerd (systemctl start docker, or deploy/dev/up.sh on a dev machine), or set DOCKER_HOST',
        );
      }
    },
  },
  {
    name: 'kernel images present',
    fix: 'make Docker reachable first',
    after: 'Docker reachable',
    async run({ docker, settings }) {
      const prefix = await settings().then(
        (s) => s.settings.imagePrefix,
        () => defaultSettings().imagePrefix,
      );
      const images = await docker.kernelImages(prefix);
      if (images.length === 0) {
        return fail(
          `no image named ${prefix}* on this node`,
          `build one: sudo deploy/kernels/build-base.sh (makes ${prefix}python:3-debian), or set the image_prefix setting`,
        );
      }
      return pass(`${images.length} with prefix ${prefix}: ${images.map(([name]) => name).join(', ')}`);
    },
  },
  {
    name: 'RPC port free',
    fix: 'choose another port with --agent-port / BACKEND_AGENT_PORT',
    async run({ options }) {
      const host = options.bindHost === '*' ? '0.0.0.0' : options.bindHost;
      const problem = await tryListen(host, options.agentPort);
      if (problem === null) return pass(`${options.bindHost}:${options.agentPort} is free`);
      return fail(
        `cannot listen on ${options.bindHost}:${options.agentPort} (${problem})`,
        `find what holds it (ss -ltnp 'sport = ${options.agentPort}') and stop it, or choose another --agent-port / BACKEND_AGENT_PORT`,
      );
    },
  },
  {
    name: 'cgroup controllers',
    fix: 'mount the cgroup hierarchy at /sys/fs/cgroup',
    async run() {
      return cgroupControllers('/sys/fs/cgroup');
    },
  },
  {
    name: 'GPUs',
    fix: 'run nvidia-smi by hand and see README.rst, GPUs',
    async run({ docker, settings }) {
      const allow = await settings().then(
        (s) => s.settings.gpuAllow,
        () => [],
      );
      return gpuCheck(new NvidiaCuda({ allow: () => allow, docker: () => docker.runtimes() }));
    },
  },
  {
    name: 'scratch quotas (hostfile)',
    fix: 'install e2fsprogs and util-linux, make loop devices available (modprobe loop) and run the agent as root; or set scratch_type to hostdir',
    async run({ settings }) {
      const type = await settings().then(
        (s) => s.settings.scratchType,
        () => 'hostdir' as const,
      );
      const { problems, found } = await hostfileProblems();
      if (!problems.length) return pass(`hostfile homes can work here (${found.join(', ')}); scratch_type is ${type}`);
      const why = problems.join('; ');
      const needed = type === 'hostfile' ? problems : type === 'memory' ? problems.filter((p) => p === MOUNT_RIGHTS) : [];
      if (needed.length)
        return fail(
          `scratch_type is ${type}, which cannot work here: ${needed.join('; ')}`,
          `fix that, or set scratch_type to hostdir; the agent refuses to start as it is`,
        );
      return pass(`hostfile homes cannot work here (${why}); scratch_type is ${type}, which does not need them`);
    },
  },
  NETWORK_CHECK,
  SWARM_CHECK,
  ...PREP_CHECKS,
];

/** Thrown by a check to fail with a detail and fix of its own. */
class CheckFailure extends Error {
  constructor(
    message: string,
    readonly fix: string,
  ) {
    super(message);
  }
}

/** Runs every check in order (each bounded by {@link CHECK_TIMEOUT_MS}); never throws. */
export async function runChecks(ctx: CheckContext, checks: readonly Check[] = CHECKS): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const check of checks) {
    if (check.after !== undefined && results.find((r) => r.name === check.after)?.ok === false) {
      results.push({ name: check.name, ok: false, detail: `not checked: "${check.after}" failed`, fix: check.fix, warnings: [] });
      continue;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS / 1000} s`)), CHECK_TIMEOUT_MS);
    });
    try {
      const r = await Promise.race([check.run(ctx), timeout]);
      results.push({ name: check.name, ok: r.ok, detail: r.detail, fix: r.ok ? '' : (r.fix ?? check.fix), warnings: r.warnings ?? [] });
    } catch (err) {
      const fix = err instanceof CheckFailure ? err.fix : check.fix;
      results.push({ name: check.name, ok: false, detail: errorMessage(err).replace(/\s*\n\s*/g, ' '), fix, warnings: [] });
    } finally {
      clearTimeout(timer);
    }
  }
  return results;
}

/** Builds the {@link CheckContext} settings reader: reads both config prefixes once. */
export function settingsReader(etcd: EtcdStore, agentId: string): () => Promise<CompiledSettings> {
  let once: Promise<CompiledSettings> | null = null;
  const prefixes = settingPrefixes(agentId);
  return () =>
    (once ??= Promise.all([etcd.getPrefix(prefixes.cluster), etcd.getPrefix(prefixes.node)]).then(([c, n]) =>
      compileSettings(c, n, prefixes),
    ));
}

/** The checklist as text: one line per check, a `fix:` line under each failure, and a summary. */
export function formatChecklist(results: readonly CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.name.length));
  const lines = results.flatMap((r) => [
    `[${r.ok ? (r.warnings.length ? 'warn' : ' ok ') : 'FAIL'}] ${r.name.padEnd(width)}  ${r.detail}`,
    ...(r.ok ? [] : [`       ${' '.repeat(width)}  fix: ${r.fix}`]),
    ...r.warnings.map((w) => `       ${' '.repeat(width)}  warn: ${w}`),
  ]);
  lines.push(summaryLine(results));
  return lines.join('\n');
}

/** The last line of the checklist: how many checks passed or failed, and the warnings. */
function summaryLine(results: readonly CheckResult[]): string {
  const failed = results.filter((r) => !r.ok).length;
  const warned = results.reduce((n, r) => n + r.warnings.length, 0);
  const warnings = warned ? ` (${warned} warning${warned === 1 ? '' : 's'})` : '';
  return failed === 0 ? `all ${results.length} checks passed${warnings}` : `${failed} of ${results.length} checks failed${warnings}`;
}

/** What a configuration management tool reads of one check (`agent check --json`). */
interface CheckEntry {
  name: string;
  /** `warn`: passed, with warnings; a check not run because one it needs failed is `fail`. */
  status: 'ok' | 'warn' | 'fail';
  message: string;
  /** What to do: a failure's fix, or a warning check's fixes joined by `; `; empty when ok. */
  fix: string;
  warnings: Array<{ message: string; fix: string }>;
}

/**
 * The checklist as one JSON document (`agent check --json`): `ok` (the exit
 * code is 0 exactly when it is true), the summary line, and each check with
 * its status, message and fix; a warning's text is split at its `; fix: `.
 */
export function checkDocument(results: readonly CheckResult[]): { ok: boolean; summary: string; checks: CheckEntry[] } {
  const checks = results.map((r): CheckEntry => {
    const warnings = r.warnings.map((w) => {
      const at = w.lastIndexOf('; fix: ');
      return at === -1 ? { message: w, fix: '' } : { message: w.slice(0, at), fix: w.slice(at + '; fix: '.length) };
    });
    const status = !r.ok ? 'fail' : warnings.length ? 'warn' : 'ok';
    const fix =
      status === 'warn'
        ? warnings
            .map((w) => w.fix)
            .filter(Boolean)
            .join('; ')
        : r.fix;
    return { name: r.name, status, message: r.detail, fix, warnings };
  });
  return { ok: results.every((r) => r.ok), summary: summaryLine(results), checks };
}

/** Which controllers the agent relies on: limits (memory, cpuset) and stats (cpuacct/cpu, blkio/io). */
export async function cgroupControllers(root: string): Promise<{ ok: boolean; detail: string; fix?: string }> {
  if (existsSync(path.join(root, 'cgroup.controllers'))) {
    const have = (await fs.readFile(path.join(root, 'cgroup.controllers'), 'utf8')).trim().split(/\s+/);
    const missing = ['cpu', 'cpuset', 'memory', 'io'].filter((c) => !have.includes(c));
    if (missing.length === 0) return pass(`cgroup v2 with ${have.join(', ')}`);
    return fail(
      `cgroup v2 without ${missing.join(', ')}`,
      'enable the controllers in the kernel (e.g. boot with cgroup_enable=memory) and in cgroup.subtree_control',
    );
  }
  const want = ['memory', 'cpuset', 'cpuacct', 'blkio'];
  const missing = want.filter((c) => !existsSync(path.join(root, c)));
  if (missing.length === 0) return pass(`cgroup v1 with ${want.join(', ')}`);
  return fail(
    `cgroup v1 without ${missing.join(', ')} under ${root}`,
    `mount the missing controllers (mount -t cgroup -o ${missing[0]} cgroup ${root}/${missing[0]}) or boot with cgroup_enable=memory`,
  );
}

/** Null when a TCP listener could be opened (and closed again) on host:port, else the error code. */
export function tryListen(host: string, port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(null)));
  });
}

function parseBeat(raw: string | null): { time: number; addr: string } | null {
  try {
    const v = JSON.parse(raw ?? '') as { time?: unknown; addr?: unknown };
    return typeof v.time === 'number' ? { time: v.time, addr: String(v.addr) } : null;
  } catch {
    return null;
  }
}

function gib(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}
