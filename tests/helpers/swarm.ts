/**
 * Docker engines of the test's own, each in a network namespace of its own
 * (its own data root, exec root and socket), joined by a bridge on a /24 of
 * 198.18.0.0/15 and formed into a Docker Swarm: the nodes of a multi-node
 * session on one machine (docs/fleet.rst, "Multi-node sessions"). Every
 * name carries `casw` and a random tag; {@link Swarm.teardown} removes the
 * engines with their containers, files and mounts, the namespaces, the links
 * and the one FORWARD rule, even after a failed set-up.
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
import { eventually, uniqueName } from './env.js';

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

/**
 * Starts `count` engines (the first the swarm's manager, the others its
 * workers) and forms the swarm. On a failure on the way, what was made is
 * removed before the error is thrown.
 */
export async function startSwarm(count: number): Promise<Swarm> {
  const tag = randomBytes(3).toString('hex');
  const bridge = `caswb${tag}`;
  const net = `198.19.${randomBytes(1)[0]! % 250}`; // a /24 of 198.18.0.0/15
  const hostAddr = `${net}.1`;
  const forward = ['FORWARD', '-i', bridge, '-o', bridge, '-m', 'comment', '--comment', `compute-agent-test ${tag}`, '-j', 'ACCEPT'];
  const engines: SwarmEngine[] = [];
  const daemons: ChildProcess[] = [];
  const logs: string[] = [];
  const nses = Array.from({ length: count }, (_, i) => `casw-${tag}-${i}`);
  const teardown = async () => {
    for (const e of engines) {
      const list = await e.docker.listContainers({ all: true }).catch(() => []);
      for (const c of list)
        await e.docker
          .getContainer(c.Id)
          .remove({ force: true })
          .catch(() => undefined);
      await e.docker.swarmLeave({ force: true }).catch(() => undefined);
    }
    for (const d of daemons) if (d.exitCode === null && d.signalCode === null) d.kill('SIGTERM');
    await Promise.all(
      daemons.map(
        (d) =>
          new Promise<void>((resolve) => {
            if (d.exitCode !== null || d.signalCode !== null) return resolve();
            const t = setTimeout(() => d.kill('SIGKILL'), 20_000);
            d.once('exit', () => (clearTimeout(t), resolve()));
          }),
      ),
    );
    for (const ns of nses) {
      const p = pathsOf(ns);
      // what a dockerd killed on its way out leaves mounted: overlay layers, shm, its namespaces' bind mounts
      const mounts = readFileSync('/proc/self/mounts', 'utf8')
        .split('\n')
        .map((l) => l.split(' ')[1] ?? '')
        .filter((m) => [p.data, p.exec].some((root) => m === root || m.startsWith(`${root}/`)))
        .reverse();
      for (const m of mounts) await run('umount', '-l', m).catch(() => undefined);
      await fs.rm(p.data, { recursive: true, force: true }).catch(() => undefined);
      await fs.rm(p.exec, { recursive: true, force: true }).catch(() => undefined);
      await fs.rm(p.socket, { force: true }).catch(() => undefined);
      await fs.rm(p.pid, { force: true }).catch(() => undefined);
      await run('ip', 'netns', 'del', ns).catch(() => undefined);
    }
    await run('ip', 'link', 'del', bridge).catch(() => undefined);
    await run('iptables', '-D', ...forward).catch(() => undefined);
  };
  try {
    await run('ip', 'link', 'add', bridge, 'type', 'bridge');
    await run('ip', 'addr', 'add', `${hostAddr}/24`, 'dev', bridge);
    await run('ip', 'link', 'set', bridge, 'up');
    // The host's Docker sets FORWARD's policy to DROP, and bridged traffic passes FORWARD (br_netfilter).
    await run('iptables', '-I', ...forward);
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
      daemons.push(d.on('error', () => undefined));
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
