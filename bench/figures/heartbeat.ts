/**
 * Heartbeat cost with 300 kernel images in Docker (20 in the short form):
 * an agent whose `image_prefix` matches 300 tags of the kernel image, made
 * for the run (`bench-hb-<run id>/kernel-img<i>:1`, untagged at the end,
 * never the image itself), against an agent of the same build whose prefix
 * matches none. Both beat every 0.2 s to a PULL socket of the bench set as
 * their manager's event sink; per round, over a window, the agent's CPU
 * (every thread, from /proc) per heartbeat and the bytes of each
 * `instance_heartbeat` message (its three frames). The tags live under a
 * repository of the run's own, so other agents on the machine (default
 * prefix `lablup/kernel-`) do not see them.
 */
import { performance } from 'node:perf_hooks';
import * as zmq from 'zeromq';
import { inBatches, type Figure, type Samples, type Side } from '../harness.js';
import { IMAGE_PREFIX, KERNEL_LANG, type BenchAgent, type BenchEnv } from '../lib/env.js';
import { freePort } from '../lib/ports.js';
import { cpuNs } from '../lib/proc.js';

const INTERVAL_S = 0.2;

/** Collects the heartbeats of one agent id from a bound PULL socket: their count and sizes. */
class BeatCounter {
  readonly sizes: number[] = [];
  private readonly pull = new zmq.Pull({ linger: 0 });
  private running: Promise<void> | null = null;

  constructor(readonly endpoint: string) {}

  async start(): Promise<void> {
    await this.pull.bind(this.endpoint);
    this.running = (async () => {
      try {
        for await (const frames of this.pull) {
          if (frames[0]?.toString() === 'instance_heartbeat') this.sizes.push(frames.reduce((n, f) => n + f.length, 0));
        }
      } catch (err) {
        if (!this.pull.closed) throw err;
      }
    })();
  }

  async close(): Promise<void> {
    this.pull.close();
    await this.running;
  }
}

function side(label: string, agent: BenchAgent, beats: BeatCounter, windowMs: number): Side {
  return {
    label,
    async measure() {
      const n0 = beats.sizes.length;
      const c0 = await cpuNs(agent.pid);
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, windowMs));
      const cpuMs = ((await cpuNs(agent.pid)) - c0) / 1e6;
      const got = beats.sizes.slice(n0);
      if (got.length === 0) throw new Error(`${label}: no heartbeat arrived within ${(performance.now() - t0).toFixed(0)} ms`);
      const out: Samples = { cpu: [cpuMs / got.length], bytes: got };
      return out;
    },
  };
}

/** Tags the kernel image `count` times under a repository of the run; each tag is removed at the run's end (never the image). */
async function tagImages(env: BenchEnv, repo: string, count: number): Promise<void> {
  const image = env.docker.getImage(`${IMAGE_PREFIX}${KERNEL_LANG}`);
  const tags = Array.from({ length: count }, (_, i) => `${repo}img${i}`);
  env.onClose(() =>
    inBatches(tags, 20, (t) =>
      env.docker
        .getImage(`${t}:1`)
        .remove({ noprune: true })
        .catch(() => undefined),
    ),
  );
  await inBatches(tags, 10, (t) => image.tag({ repo: t, tag: '1' }));
}

export const heartbeatFigure: Figure = {
  name: 'heartbeat',
  title: 'Heartbeat cost: an agent with 300 kernel images in Docker vs one with none',
  measures:
    'agent CPU per heartbeat (ms, every thread, over a 10 s window of beats every 0.2 s) and the bytes of each instance_heartbeat message, ' +
    "with 300 tags of the kernel image under the agent's image_prefix (20 in the short form) against a prefix matching none",
  target: 'none set by the issue: the figures are reported (CPU and bytes per heartbeat with 300 images)',
  sides: ['300 images', 'no images'],
  metrics: [
    { key: 'cpu', label: 'agent CPU per heartbeat', unit: 'ms', better: 'lower' },
    { key: 'bytes', label: 'heartbeat message', unit: 'bytes', better: 'lower' },
  ],
  rounds: { full: 6, short: 1 },
  async prepare(env, settings) {
    const count = settings.short ? 20 : 300;
    const windowMs = settings.short ? 2000 : 10_000;
    const repo = `bench-hb-${env.runId}/kernel-`;
    await tagImages(env, repo, count);
    const many = new BeatCounter(`tcp://127.0.0.1:${await freePort()}`);
    const none = new BeatCounter(`tcp://127.0.0.1:${await freePort()}`);
    await Promise.all([many.start(), none.start()]);
    env.onClose(() => Promise.all([many.close(), none.close()]).then(() => undefined));
    const agent = (name: string, prefix: string, sink: BeatCounter) =>
      env.agent({
        name,
        settings: { image_prefix: prefix, heartbeat_interval: String(INTERVAL_S) },
        args: [],
        keys: { 'nodes/manager/event_addr': sink.endpoint.replace('tcp://', '') },
      });
    const [a, b] = await Promise.all([agent('hb-many', repo, many), agent('hb-none', `bench-hb-${env.runId}-none/kernel-`, none)]);
    return { a: side('300 images', a, many, windowMs), b: side('no images', b, none, windowMs), close: async () => {} };
  },
  verdict(m) {
    const cpu = m.cpu!;
    const bytes = m.bytes!;
    return {
      met: true,
      detail:
        `no target (reported only): with the images a heartbeat costs ${cpu.a.median.toFixed(2)} ms of agent CPU (${cpu.b.median.toFixed(2)} ms without) ` +
        `and weighs ${bytes.a.median.toFixed(0)} bytes (${bytes.b.median.toFixed(0)} without)`,
    };
  },
};
