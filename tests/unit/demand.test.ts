/** The split of the cluster's pending demand among the live agents. */
import { expect } from 'chai';
import { DemandWindow, largestRemainder, parseDemand, splitDemand, type AgentCapacity } from '../../src/services/demand.js';
import { liveAgents } from '../../src/services/demand-share.js';
import { decideSize } from '../../src/pool/sizing.js';

const agents: AgentCapacity[] = [
  { id: 'i-c', freeCores: 2, freeMemMiB: 2048 },
  { id: 'i-a', freeCores: 8, freeMemMiB: 8192 },
  { id: 'i-b', freeCores: 4, freeMemMiB: 4096 },
];

describe('demand split', () => {
  it('gives every agent the same assignment whatever order it lists the agents in', () => {
    const demand = { 'python:3-debian': { small: 10, large: 3 }, 'r:4': { small: 1 } };
    const one = splitDemand(demand, agents);
    const two = splitDemand(demand, [agents[2]!, agents[0]!, agents[1]!]);
    expect([...two.entries()]).to.deep.equal([...one.entries()]);
  });

  it('adds the shares up to the demand, by free capacity and largest remainder', () => {
    const split = splitDemand({ 'python:3-debian': { small: 10, large: 3 } }, agents);
    // weights 8/14, 4/14, 2/14: 5.71, 2.86, 1.43 -> 5 2 1 + the remainders .86 .71 -> 6 3 1
    expect(split.get('i-a')).to.deep.equal({ 'python:3-debian': { small: 6, large: 2 } });
    expect(split.get('i-b')).to.deep.equal({ 'python:3-debian': { small: 3, large: 1 } });
    expect(split.get('i-c')).to.deep.equal({ 'python:3-debian': { small: 1 } });
    for (const type of ['small', 'large']) {
      const sum = [...split.values()].reduce((a, d) => a + (d['python:3-debian']?.[type] ?? 0), 0);
      expect(sum, type).to.equal(type === 'small' ? 10 : 3);
    }
  });

  it("moves a departed agent's share to those left", () => {
    const demand = { 'python:3-debian': { small: 4 } };
    const equal = [
      { id: 'i-1', freeCores: 2, freeMemMiB: 1024 },
      { id: 'i-2', freeCores: 2, freeMemMiB: 1024 },
    ];
    expect(splitDemand(demand, equal).get('i-1')).to.deep.equal({ 'python:3-debian': { small: 2 } });
    const left = splitDemand(demand, [equal[1]!]);
    expect(left.get('i-2')).to.deep.equal({ 'python:3-debian': { small: 4 } });
    expect(left.has('i-1')).to.equal(false);
  });

  it('breaks ties by agent id and splits evenly when nobody has room', () => {
    expect(largestRemainder(1, [1, 1, 1])).to.deep.equal([1, 0, 0]);
    expect(largestRemainder(5, [0, 0])).to.deep.equal([3, 2]);
    expect(largestRemainder(0, [1, 2])).to.deep.equal([0, 0]);
    const split = splitDemand({ l: { t: 1 } }, [
      { id: 'i-z', freeCores: 1, freeMemMiB: 1 },
      { id: 'i-y', freeCores: 1, freeMemMiB: 1 },
    ]);
    expect(split.get('i-y')).to.deep.equal({ l: { t: 1 } });
    expect(split.get('i-z')).to.deep.equal({});
  });

  it('reads the demand key and says what is wrong with a bad one', () => {
    expect(parseDemand('{"python:3-debian":{"small":3}}')).to.deep.equal({ 'python:3-debian': { small: 3 } });
    expect(() => parseDemand('nope')).to.throw(/is not JSON/);
    expect(() => parseDemand('[1]')).to.throw(/must be a JSON object/);
    expect(() => parseDemand('{"p":{"small":-1}}')).to.throw(/p\.small must be a whole number/);
    expect(() => parseDemand('{"p":{"small":1.5}}')).to.throw(/whole number/);
  });

  it('averages the demand over its window, so one spike does not start a storm', () => {
    const w = new DemandWindow();
    expect(w.add({ l: { t: 2 } }, 0, 60)).to.deep.equal({ l: { t: 2 } });
    expect(w.add({ l: { t: 2 } }, 10_000, 60)).to.deep.equal({ l: { t: 2 } });
    expect(w.add({ l: { t: 50 } }, 20_000, 60)).to.deep.equal({ l: { t: 18 } });
    expect(w.add({}, 100_000, 60)).to.deep.equal({});
  });

  it('takes the live agents and their free room from the registrations and heartbeat records', () => {
    const tree = {
      'i-1': 'running',
      'i-1/heartbeat': JSON.stringify({ cpu_slots: 8, kernels: 3, node: { mem_available_bytes: 2 * 1024 ** 3 } }),
      'i-1/config/pool/images': '{}',
      'i-2': 'starting',
      'i-3': 'running',
      'i-3/heartbeat': 'garbage',
    };
    expect(liveAgents(tree)).to.deep.equal([
      { id: 'i-1', freeCores: 5, freeMemMiB: 2048 },
      { id: 'i-3', freeCores: 0, freeMemMiB: 0 },
    ]);
  });

  it("sizes a pool to the floor plus the share, bounded by max, or to the autoscaler's target when larger", () => {
    const base = { floor: 1, max: 4, autoscale: false, recentDemand: 0, creating: 0, idle: [], nowMs: 0, maxIdleSec: 60 };
    expect(decideSize({ ...base, clusterShare: 2 }).target).to.equal(3);
    expect(decideSize({ ...base, clusterShare: 9 }).target).to.equal(4);
    expect(decideSize({ ...base, clusterShare: 0 }).target).to.equal(1);
    expect(decideSize({ ...base, autoscale: true, recentDemand: 4, clusterShare: 1 }).target).to.equal(4);
  });
});
