/**
 * A hostile manager against the per-method RPC metrics (manager -> host,
 * docs/observability.rst): method names are the manager's to choose, and a
 * label per name would grow the agent's memory and every scrape without
 * bound. Thousands of distinct names on both generations, names that try to
 * break out of a label (quotes, backslashes, newlines, braces), names of
 * Object.prototype and names of the other generation's table are counted
 * under the one label `unknown`; the set of series stays what it was after
 * the first few, and the exposition still parses.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { modernMethods, modernNotServed } from '../../src/rpc/modern-methods.js';
import { CallosumClient } from '../../src/rpc/callosum-client.js';
import { UNKNOWN_METHOD } from '../../src/rpc/call-tally.js';
import { WireErrors } from '../../src/errors.js';
import { freePort, onCleanup, remoteError, requireEtcd, startAgent } from '../helpers/env.js';
import { parsePrometheus, type Exposition } from '../helpers/prometheus.js';

/** Names a hostile manager may send; each call gets one, none is in either table. */
function hostileName(i: number): string {
  const tricky = [
    'x"} 1\ncompute_agent_rpc_calls_total{method="pwned',
    'a\\',
    '{{}}',
    '__proto__',
    'constructor',
    'hasOwnProperty',
    UNKNOWN_METHOD,
    'ping ',
    'PING',
    'é\u0000\u202e',
    'y'.repeat(10_000),
  ];
  return i < tricky.length ? tricky[i]! : `m_${i}_${randomBytes(6).toString('hex')}`;
}

/** Each series of the RPC metrics as `name{labels}`, without its value. */
const rpcSeries = (m: Exposition) =>
  new Set(m.samples.filter((s) => s.name.startsWith('compute_agent_rpc_')).map((s) => `${s.name}${JSON.stringify(s.labels)}`));

describe('security: method names a manager sends cannot grow the RPC metrics', function () {
  this.timeout(90_000);
  before(requireEtcd);

  it('counts any name outside the tables under one label on both generations, the series bounded', async () => {
    const metricsPort = await freePort();
    const { client, port } = await startAgent({ metricsPort });
    const modern = new CallosumClient(`tcp://127.0.0.1:${port}`, { timeoutMs: 10_000 });
    onCleanup(() => modern.close());
    const scrape = async () => parsePrometheus(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
    // names of the other generation's table are unknown to this one
    const crossed = { legacy: ['reset_agent', 'gather_hwinfo', 'create_kernels'], modern: ['reset', 'create_kernel', 'get_node_stats'] };
    let sent = 0;
    const burst = async (from: number, to: number) => {
      for (let i = from; i < to; i += 100) {
        const names = Array.from({ length: Math.min(100, to - i) }, (_, j) => hostileName(i + j));
        await Promise.all(names.flatMap((n) => [remoteError(client.callRaw(n, [])), remoteError(modern.callRaw(n, []))]));
        sent += names.length;
      }
    };
    await burst(0, 20);
    await Promise.all([
      ...crossed.legacy.map((n) => remoteError(client.callRaw(n, []))),
      ...crossed.modern.map((n) => remoteError(modern.callRaw(n, []))),
    ]);
    const early = rpcSeries(await scrape());
    await burst(20, 1500);
    const m = await scrape();

    expect(rpcSeries(m)).to.deep.equal(early); // thousands more names, not one more series
    const declared = new Set([
      ...Object.values(methods).map((d) => d.name),
      ...Object.values(modernMethods).map((d) => d.name),
      ...modernNotServed,
      UNKNOWN_METHOD,
    ]);
    const labelled = m.samples.filter((s) => s.labels.method !== undefined);
    expect(labelled.filter((s) => !declared.has(s.labels.method!)).map((s) => s.labels.method)).to.deep.equal([]);
    expect(labelled.map((s) => s.labels.method)).to.not.include('ping'); // a name close to a method is not that method
    const wireNames = new Set<string>(Object.values(WireErrors));
    expect(m.samples.filter((s) => s.labels.error !== undefined && !wireNames.has(s.labels.error))).to.deep.equal([]);
    const calls = (generation: string) =>
      m.samples.find(
        (s) => s.name === 'compute_agent_rpc_calls_total' && s.labels.generation === generation && s.labels.method === UNKNOWN_METHOD,
      )?.value;
    expect(calls('2018')).to.equal(sent + crossed.legacy.length);
    expect(calls('modern')).to.equal(sent + crossed.modern.length);
    expect(await client.call(methods.ping, 'still here')).to.equal('still here');
  });
});
