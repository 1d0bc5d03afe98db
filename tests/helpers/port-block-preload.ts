/**
 * A module that {@link spawnAgent} preloads (`node --import`) into the agent
 * CLI it runs under mocha: it puts the port block in TEST_PORT_BLOCK as the
 * namespace's `container_port_range` before the agent starts, unless the
 * namespace has one. Agents run as children would otherwise all take the
 * default range, and two test processes running at once (mocha's parallel
 * workers) would give the same host port to two kernels. It also puts
 * `image_gc_high` 100 unless set, as startAgent does: a test agent never
 * collects the shared kernel images, however full the disk. Best effort: with
 * no `--namespace` flag, or an etcd that does not answer within 3 s, the
 * agent starts as it would have.
 */
import { Etcd3 } from 'etcd3';

function flag(name: string): string | undefined {
  const args = process.argv.slice(2);
  const i = args.indexOf(name);
  if (i >= 0) return args[i + 1];
  return args.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
}

const block = process.env.TEST_PORT_BLOCK;
const namespace = flag('--namespace');
const etcdAddr = flag('--etcd-addr')?.split(',')[0];
if (namespace && etcdAddr) {
  const client = new Etcd3({ hosts: `http://${etcdAddr}`, dialTimeout: 3000 });
  const key = 'config/agent/container_port_range';
  const ns = client.namespace(`/sorna/${namespace}/`);
  const gcKey = 'config/agent/image_gc_high';
  // The collector's guard also holds outside mocha (npm run soak), where there is no port block.
  const put = Promise.all([
    block ? ns.if(key, 'Create', '==', 0).then(ns.put(key).value(block)).commit() : undefined,
    ns.if(gcKey, 'Create', '==', 0).then(ns.put(gcKey).value('100')).commit(),
  ]);
  const timer = new Promise((resolve) => setTimeout(resolve, 3000).unref());
  await Promise.race([put, timer]).catch(() => undefined); // no etcd yet (a test of waiting for it): the default range
  client.close();
}
delete process.env.TEST_PORT_BLOCK; // not for what the agent runs (start-up scripts)
