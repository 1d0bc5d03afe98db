/** Warm pool settings, sizing and pinning policies: shapes, node over cluster, last good values, floor, autoscale, max idle, pins. */
import { expect } from 'chai';
import { compileSettings } from '../../src/config/settings.js';
import { compilePoolSettings, fittingType, POOL_DEFAULTS } from '../../src/pool/settings.js';
import { decideSize, type SizingInput } from '../../src/pool/sizing.js';
import { limitsExact, pinCores } from '../../src/pool/pinning.js';

const prefixes = { cluster: 'config/agent/', node: 'nodes/agents/i-1/config/' };
const TYPES = JSON.stringify([
  { name: 'small', cpu: 1, memory: 256 },
  { name: 'large', cpu: 2, memory: '2g' },
]);

describe('pool settings', () => {
  it('reads types, images and numbers, the node winning over the cluster', () => {
    const { settings, problems } = compilePoolSettings(
      { 'pool/types': TYPES, 'pool/images': '{"python:3": {"small": 2, "large": 1}}', 'pool/max': '4', 'pool/autoscale': 'true' },
      { 'pool/max': '6', 'pool/check_interval': '0.5' },
      prefixes,
    );
    expect(problems).to.deep.equal([]);
    expect(settings.types).to.deep.equal([
      { name: 'small', cpu: 1, memMiB: 256, gpu: 0 },
      { name: 'large', cpu: 2, memMiB: 2048, gpu: 0 },
    ]);
    expect(settings.images).to.deep.equal({ 'python:3': { small: 2, large: 1 } });
    expect(settings).to.include({ max: 6, autoscale: true, checkIntervalSec: 0.5, zombieAllowanceSec: 300, fillConcurrency: 2 });
  });

  it('rejects a bad value naming its key, and keeps the last good value of that key', () => {
    const good = compilePoolSettings(
      { 'pool/types': TYPES, 'pool/images': '{"python:3": {"small": 1}}', 'pool/max': '5' },
      {},
      prefixes,
    ).settings;
    const c = compilePoolSettings(
      { 'pool/types': TYPES, 'pool/images': '{"python:3": {"small": 3}}', 'pool/max': 'lots' },
      { 'pool/fill_concurrency': '0' },
      prefixes,
      good,
    );
    expect(c.problems.map((p) => p.source)).to.deep.equal(['config/agent/pool/max', 'nodes/agents/i-1/config/pool/fill_concurrency']);
    expect(c.problems[0]!.message).to.match(/"lots" is not a number/);
    expect(c.settings.max).to.equal(5);
    expect(c.settings.fillConcurrency).to.equal(POOL_DEFAULTS.fillConcurrency);
    expect(c.settings.images).to.deep.equal({ 'python:3': { small: 3 } }); // the good key applies
  });

  it('rejects images naming an undefined type, and malformed JSON shapes', () => {
    const good = compilePoolSettings({ 'pool/types': TYPES, 'pool/images': '{"python:3": {"small": 1}}' }, {}, prefixes).settings;
    const c = compilePoolSettings({ 'pool/types': TYPES, 'pool/images': '{"python:3": {"huge": 1}}' }, {}, prefixes, good);
    expect(c.problems).to.have.length(1);
    expect(c.problems[0]!.source).to.equal('config/agent/pool/images');
    expect(c.problems[0]!.message).to.match(/names type huge/);
    expect(c.settings.images).to.deep.equal({ 'python:3': { small: 1 } });
    for (const [key, raw, why] of [
      ['pool/types', '{"name": "x"}', /JSON list/],
      ['pool/types', '[{"name": "x", "cpu": 0, "memory": 1}]', /cpu must be/],
      ['pool/types', '[{"name": "x", "cpu": 1, "memory": "lots"}]', /memory/],
      ['pool/types', '[{"name": "x", "cpu": 1, "memory": 64}, {"name": "x", "cpu": 1, "memory": 64}]', /twice/],
      ['pool/images', 'not json', /not JSON/],
      ['pool/images', '{"python:3": {"small": -1}}', /whole number/],
      ['pool/autoscale', 'maybe', /true or false/],
    ] as const) {
      const r = compilePoolSettings({ [key]: raw }, {}, prefixes);
      expect(
        r.problems.map((p) => p.source),
        raw,
      ).to.deep.equal([`config/agent/${key}`]);
      expect(r.problems[0]!.message, raw).to.match(why);
    }
  });

  it('are not reported as unknown agent settings', () => {
    expect(compileSettings({ 'pool/types': TYPES, 'pool/imagez': '{}' }, {}).unknown).to.deep.equal([]);
  });

  it('picks the smallest type that holds a request', () => {
    const types = compilePoolSettings({ 'pool/types': TYPES }, {}, prefixes).settings.types;
    expect(fittingType(types, 1, 128)?.name).to.equal('small');
    expect(fittingType(types, 1, 512)?.name).to.equal('large');
    expect(fittingType(types, 2, 256)?.name).to.equal('large');
    expect(fittingType(types, 3, 256)).to.equal(null);
  });

  it('reads a GPU count per type, and fits a request only to a type of exactly its GPU count', () => {
    const withGpu = JSON.stringify([
      { name: 'small', cpu: 1, memory: 256 },
      { name: 'g1', cpu: 1, memory: 256, gpu: 1 },
      { name: 'g2', cpu: 4, memory: '8g', gpu: 2 },
    ]);
    const types = compilePoolSettings({ 'pool/types': withGpu }, {}, prefixes).settings.types;
    expect(types.map((t) => t.gpu)).to.deep.equal([0, 1, 2]);
    expect(fittingType(types, 1, 128)?.name).to.equal('small');
    expect(fittingType(types, 1, 128, 1)?.name).to.equal('g1');
    expect(fittingType(types, 1, 128, 2)?.name).to.equal('g2');
    expect(fittingType(types, 1, 128, 3)).to.equal(null);
    const bad = compilePoolSettings({ 'pool/types': JSON.stringify([{ name: 'g', cpu: 1, memory: 256, gpu: 0.5 }]) }, {}, prefixes);
    expect(bad.problems[0]!.message).to.equal('type g gpu must be a whole number of GPUs from 0 to 64');
  });
});

describe('pool sizing', () => {
  const base: SizingInput = {
    floor: 2,
    max: 5,
    autoscale: false,
    recentDemand: 0,
    creating: 0,
    idle: [],
    nowMs: 1_000_000,
    maxIdleSec: 60,
  };
  const idle = (n: number, idleSinceMs = 1_000_000) => Array.from({ length: n }, (_, i) => ({ id: `c${i}`, idleSinceMs: idleSinceMs - i }));

  it('fills to the floor, counting containers still being created', () => {
    expect(decideSize(base)).to.deep.equal({ target: 2, create: 2, remove: [] });
    expect(decideSize({ ...base, creating: 1 })).to.deep.equal({ target: 2, create: 1, remove: [] });
    expect(decideSize({ ...base, creating: 2, idle: idle(1) })).to.deep.equal({ target: 2, create: 0, remove: [] });
  });

  it('without autoscale, removes what is above the floor at once, oldest first', () => {
    expect(decideSize({ ...base, floor: 1, idle: idle(3) }).remove).to.deep.equal(['c2', 'c1']);
    expect(decideSize({ ...base, floor: 0, creating: 1, idle: idle(1) }).remove).to.deep.equal(['c0']);
  });

  it('with autoscale, follows recent demand up to max, never below the floor', () => {
    const auto = { ...base, autoscale: true };
    expect(decideSize({ ...auto, recentDemand: 4 }).target).to.equal(4);
    expect(decideSize({ ...auto, recentDemand: 40 }).target).to.equal(5);
    expect(decideSize({ ...auto, recentDemand: 0 }).target).to.equal(2);
    expect(decideSize({ ...auto, recentDemand: 4, creating: 3, idle: idle(1) }).create).to.equal(0);
  });

  it('with autoscale, removes idle containers above the target only after max idle', () => {
    const auto = { ...base, autoscale: true, floor: 1 };
    expect(decideSize({ ...auto, idle: idle(3, 1_000_000 - 30_000) }).remove).to.deep.equal([]);
    const old = decideSize({
      ...auto,
      idle: [
        { id: 'old', idleSinceMs: 1_000_000 - 120_000 },
        { id: 'new', idleSinceMs: 1_000_000 - 1000 },
        { id: 'mid', idleSinceMs: 1_000_000 - 90_000 },
      ],
    });
    expect(old.remove).to.deep.equal(['old', 'mid']);
  });
});

describe('pool pinning', () => {
  it('pins where the allocator would go next, spreading the pool over the least loaded cores', () => {
    const none = new Map<number, number>();
    expect(pinCores([0, 1, 2, 3], 1, none, [])).to.deep.equal([0]);
    expect(pinCores([0, 1, 2, 3], 1, none, [[0]])).to.deep.equal([1]);
    expect(pinCores([0, 1, 2, 3], 2, none, [[0, 1]])).to.deep.equal([2, 3]);
    // cores held by kernels count as load: the allocator would give the free ones first
    expect(
      pinCores(
        [0, 1, 2, 3],
        2,
        new Map([
          [0, 1],
          [2, 1],
        ]),
        [],
      ),
    ).to.deep.equal([1, 3]);
    expect(pinCores([0, 1], 1, new Map([[0, 1]]), [[1]])).to.deep.equal([0]);
    // a type wider than the node takes every core; a fractional one at least one
    expect(pinCores([0, 1], 4, none, [])).to.deep.equal([0, 1]);
    expect(pinCores([0, 1], 0, none, [])).to.deep.equal([0]);
  });

  it('finds limits exact only for the same cores in order and the same memory', () => {
    expect(limitsExact({ cpuSet: [1, 2], memMiB: 256 }, [1, 2], 256)).to.equal(true);
    expect(limitsExact({ cpuSet: [1, 2], memMiB: 256 }, [1, 3], 256)).to.equal(false);
    expect(limitsExact({ cpuSet: [1, 2], memMiB: 256 }, [1], 256)).to.equal(false);
    expect(limitsExact({ cpuSet: [1, 2], memMiB: 256 }, [1, 2], 128)).to.equal(false);
    expect(limitsExact(null, [1, 2], 256)).to.equal(false);
  });
});
