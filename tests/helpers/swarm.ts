/**
 * Docker engines of the test's own, each in a network namespace of its own
 * (its own data root, exec root and socket), joined by a bridge on a /24 of
 * 198.18.0.0/15 and formed into a Docker Swarm: the nodes of a multi-node
 * session on one machine (docs/fleet.rst, "Multi-node sessions"). Every
 * name carries `casw` and a random tag; {@link Swarm.teardown} removes the
 * engines with their containers, files and mounts, the namespaces, the links
 * and the one FORWARD rule, even after a failed set-up, and the next
 * {@link startSwarm} removes those of a test process that was killed first
 * (`/run/casw-<tag>.owner` names the process).
 *
 * Agents run in an engine's namespace (`nsenter --net`: `ip netns exec`
 * would mount a /sys of its own, without the cgroup hierarchies dockerd
 * needs), so that their firewall chains sit beside that engine's bridges;
 * they reach the shared etcd through a proxy of the test on the bridge's
 * address.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { alive, eventually, uniqueName } from './env.js';

const exec = promisify(execFile);
const run = (file: string, ...args: string[]) => exec(file, args, { timeout: 30_000 });

/** One engine of the swarm. */
export interface SwarmEngine {
  /** Its network namespace, `/var/run/netns/<ns>`. */
  ns: string;
  /** Its address on the bridge between the engines. */
  addr: string;
  /** Its socket, for DOCKER_HOST. */
  socket: string;
  docker: Docker;
}

export interface Swarm {
  engines: SwarmEngine[];
  /** The host's address on the bridge (the engines' default route). */
  hostAddr: string;
  /** Removes everything the set-up made; never throws. */
  teardown(): Promise<void>;
}

/** Dockerd's paths of an engine: its data root, exec root, socket and pid file. */
const pathsOf = (ns: string) => ({
  data: `/var/lib/compute-agent-test/${ns}`,
  exec: `/run/${ns}`,
  socket: `/run/${ns}.sock`,
  pid: `/run/${ns}.pid`,
});

/** The FORWARD rule that lets the engines' traffic cross the bridge between them (the host's Docker sets FORWARD's policy to DROP). */
const forwardRule = (tag: string) => {
  const bridge = `caswb${tag}`;
  return ['FORWARD', '-i', bridge, '-o', bridge, '-m', 'comment', '--comment', `compute-agent-test ${tag}`, '-j', 'ACCEPT'];
};

/** The file that names the test process a swarm of that tag belongs to (its pid). */
const ownerFile = (tag: string) => `/run/casw-${tag}.owner`;

/** Sends a signal to a process that may have ended meanwhile. */
const signal = (pid: number, sig: NodeJS.Signals) => {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
};

/**
 * Removes everything of the swarm of `tag`, from its names alone (so that a
 * swarm whose test process was killed can be removed too): the engines'
 * containers and swarm membership, the engines (SIGTERM by pid file, SIGKILL
 * after 20 s), what they leave mounted, their files, the namespaces, the
 * bridge and the FORWARD rule. Never throws.
 */
async function removeSwarm(tag: string): Promise<void> {
  const nses = (await run('ip', 'netns', 'list').catch(() => ({ stdout: '' }))).stdout
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(`casw-${tag}-`));
  const pids: number[] = [];
  for (const ns of nses) {
    // what else runs in the namespace (agents of a killed test process) goes first, so that nothing makes kernels meanwhile
    for (const pid of await pidsIn(ns)) {
      const comm = await fs.readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
      if (!['dockerd', 'containerd', 'docker-proxy'].includes(comm.trim())) signal(pid, 'SIGKILL');
    }
    const p = pathsOf(ns);
    const docker = new Docker({ socketPath: p.socket });
    const list = await docker.listContainers({ all: true }).catch(() => []);
    for (const c of list)
      await docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => undefined);
    await docker.swarmLeave({ force: true }).catch(() => undefined);
    const pid = Number((await fs.readFile(p.pid, 'utf8').catch(() => '')).trim());
    if (pid > 0 && alive(pid)) pids.push(pid);
  }
  for (const pid of pids) signal(pid, 'SIGTERM');
  for (const pid of pids) {
    const deadline = Date.now() + 20_000;
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (alive(pid)) signal(pid, 'SIGKILL');
  }
  for (const ns of nses) {
    for (const pid of await pidsIn(ns)) signal(pid, 'SIGKILL'); // anything left in it
    const p = pathsOf(ns);
    // what a dockerd killed on its way out leaves mounted: overlay layers, shm, its namespaces' bind mounts
    const mounts = readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[1] ?? '')
      .filter((m) => [p.data, p.exec].some((root) => m === root || m.startsWith(`${root}/`)))
      .reverse();
    for (const m of mounts) await run('umount', '-l', m).catch(() => undefined);
    for (const f of [p.data, p.exec, p.socket, p.pid]) await fs.rm(f, { recursive: true, force: true }).catch(() => undefined);
    await run('ip', 'netns', 'del', ns).catch(() => undefined);
  }
  await run('ip', 'link', 'del', `caswb${tag}`).catch(() => undefined);
  await run('iptables', '-D', ...forwardRule(tag)).catch(() => undefined);
  await fs.rm(ownerFile(tag), { force: true }).catch(() => undefined);
}

/** The processes in a network namespace. */
async function pidsIn(ns: string): Promise<number[]> {
  const out = (await run('ip', 'netns', 'pids', ns).catch(() => ({ stdout: '' }))).stdout;
  return out
    .split('\n')
    .map(Number)
    .filter((n) => n > 0 && n !== process.pid);
}

/** Removes the swarms whose test process is gone (killed before its teardown ran). */
async function sweepSwarms(): Promise<void> {
  for (const f of await fs.readdir('/run').catch(() => [] as string[])) {
    const m = /^casw-([0-9a-f]{6})\.owner$/.exec(f);
    if (!m) continue;
    const pid = Number((await fs.readFile(`/run/${f}`, 'utf8').catch(() => '')).trim());
    if (!(pid > 0 && alive(pid))) await removeSwarm(m[1]!);
  }
}

/**
 * Starts `count` engines (the first the swarm's manager, the others its
 * workers) and forms the swarm. On a failure on the way, what was made is
 * removed before the error is thrown. Swarms left by a test process that
 * was killed are removed first.
 */
export async function startSwarm(count: number): Promise<Swarm> {
  await sweepSwarms();
  const tag = randomBytes(3).toString('hex');
  await fs.writeFile(ownerFile(tag), String(process.pid));
  const bridge = `caswb${tag}`;
  const net = `198.19.${randomBytes(1)[0]! % 250}`; // a /24 of 198.18.0.0/15
  const hostAddr = `${net}.1`;
  const engines: SwarmEngine[] = [];
  const logs: string[] = [];
  const nses = Array.from({ length: count }, (_, i) => `casw-${tag}-${i}`);
  const children: ChildProcess[] = [];
  const teardown = async () => {
    await removeSwarm(tag);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); // one that never wrote its pid file
  };
  try {
    await run('ip', 'link', 'add', bridge, 'type', 'bridge');
    await run('ip', 'addr', 'add', `${hostAddr}/24`, 'dev', bridge);
    await run('ip', 'link', 'set', bridge, 'up');
    // The host's Docker sets FORWARD's policy to DROP, and bridged traffic passes FORWARD (br_netfilter).
    await run('iptables', '-I', ...forwardRule(tag));
    for (const [i, ns] of nses.entries()) {
      const outside = `cw${tag}${i}o`;
      const addr = `${net}.${i + 2}`;
      await run('ip', 'netns', 'add', ns);
      await run('ip', 'link', 'add', outside, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      await run('ip', 'link', 'set', outside, 'master', bridge, 'up');
      await run('ip', '-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0');
      await run('ip', '-n', ns, 'link', 'set', 'eth0', 'up');
      await run('ip', '-n', ns, 'link', 'set', 'lo', 'up');
      await run('ip', '-n', ns, 'route', 'add', 'default', 'via', hostAddr);
      const p = pathsOf(ns);
      await fs.mkdir(p.data, { recursive: true });
      const d = spawn(
        'nsenter',
        [
          ...[`--net=/var/run/netns/${ns}`, 'dockerd', '--data-root', p.data, '--exec-root', p.exec, '-H', `unix://${p.socket}`],
          ...['--pidfile', p.pid, '--bridge', 'none'],
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      d.stderr!.on('data', (b: Buffer) => (logs[i] = ((logs[i] ?? '') + b.toString()).slice(-4000)));
      children.push(d.on('error', () => undefined));
      engines.push({ ns, addr, socket: p.socket, docker: new Docker({ socketPath: p.socket }) });
    }
    for (const [i, e] of engines.entries())
      await eventually(`the engine in ${e.ns} answers (its log: ${logs[i] ?? ''})`, () => e.docker.ping().then(() => true), 30_000, 100);
    const [lead, ...rest] = engines;
    await lead!.docker.swarmInit({ ListenAddr: '0.0.0.0:2377', AdvertiseAddr: lead!.addr });
    const { JoinTokens } = (await lead!.docker.swarmInspect()) as { JoinTokens: { Worker: string } };
    for (const e of rest)
      await e.docker.swarmJoin({
        ListenAddr: '0.0.0.0:2377',
        AdvertiseAddr: e.addr,
        RemoteAddrs: [`${lead!.addr}:2377`],
        JoinToken: JoinTokens.Worker,
      });
  } catch (err) {
    await teardown();
    throw err;
  }
  return { engines, hostAddr, teardown };
}

/**
 * Imports a tiny image (no shell, no Python: the agent's runner environment
 * serves it as a shell kernel, its busybox on PATH) into each engine under
 * `lablup/kernel-tiny:<unique tag>`; resolves with its lang.
 */
export async function importTinyImage(engines: SwarmEngine[]): Promise<string> {
  const tag = uniqueName('mn');
  for (const e of engines) {
    const pack = tar.pack();
    pack.entry({ name: 'etc/', type: 'directory', mode: 0o755 });
    pack.entry({ name: 'etc/passwd', mode: 0o644 }, 'root:x:0:0:root:/root:/bin/sh\n');
    pack.entry({ name: 'etc/group', mode: 0o644 }, 'root:x:0:\n');
    pack.entry({ name: 'tmp/', type: 'directory', mode: 0o1777 });
    pack.entry({ name: 'home/work/', type: 'directory', mode: 0o755 });
    pack.finalize();
    const out = await e.docker.importImage(pack as unknown as NodeJS.ReadableStream, { repo: 'lablup/kernel-tiny', tag });
    await new Promise((resolve, reject) => e.docker.modem.followProgress(out, (err) => (err ? reject(err) : resolve(null))));
  }
  return `tiny:${tag}`;
}
