/**
 * The pure parts of what managers see: the aiozmq form of the agent's errors
 * (builtin names, the agent's kind as the last arg, read back by the client)
 * and the stats' forms (the 2018 hash, the modern metric maps), where an
 * unknown figure is never written as 0.
 */
import { expect } from 'chai';
import {
  aiozmqErrorValue,
  ArgumentsError,
  ImpossibleRequestError,
  InternalError,
  KernelNotFoundError,
  MethodNotFoundError,
  remoteErrorOf,
  toWireError,
  WIRE_ERROR_CLASSES,
} from '../../src/errors.js';
import { callosumFailure } from '../../src/rpc/callosum-failure.js';
import { FIGURE_KEYS, legacyHash, ModernForms, type Figures } from '../../src/stats/forms.js';

const figures = (over: Partial<Figures> = {}): Figures => ({ ...(Object.fromEntries(FIGURE_KEYS.map((k) => [k, 7])) as Figures), ...over });

describe('error names on each port', () => {
  it('sends every agent error under a Python builtin on the aiozmq port, the kind as the last arg, and the client reads the kind back', () => {
    for (const cls of Object.values(WIRE_ERROR_CLASSES)) {
      if (cls === MethodNotFoundError) continue;
      const err =
        cls === KernelNotFoundError ? new KernelNotFoundError('k1') : new (cls as unknown as new (m: string) => Error)('what happened');
      const wire = toWireError(err, 'get_logs');
      const [type, args, repr] = aiozmqErrorValue(wire);
      expect(type, cls.name).to.match(cls.aiozmqName.startsWith('builtins.') ? /^builtins\.\w+Error$/ : /^aiozmq\.rpc\.base\./);
      if (type.startsWith('builtins.')) {
        expect(args, cls.name).to.deep.equal([...wire.args, cls.wireName]);
        expect(repr).to.equal(`${type.slice('builtins.'.length)}(${args.map((a) => `'${String(a)}'`).join(', ')})`);
      }
      const back = remoteErrorOf(type, args, repr);
      expect(back.remoteType, cls.name).to.equal(cls.wireName);
      expect(back.remoteArgs, cls.name).to.deep.equal(wire.args);
      expect(callosumFailure(wire).name, 'Callosum keeps its own mapping').to.not.match(/^builtins\./);
    }
  });

  it('uses the 2018 agent’s builtins: KeyError for an unknown kernel (RuntimeError in execute), AssertionError for a refused config', () => {
    expect(aiozmqErrorValue(toWireError(new KernelNotFoundError('k'), 'interrupt_kernel'))[0]).to.equal('builtins.KeyError');
    expect(aiozmqErrorValue(toWireError(new KernelNotFoundError('k'), 'execute'))[0]).to.equal('builtins.RuntimeError');
    expect(aiozmqErrorValue(toWireError(new ImpossibleRequestError('too big'), 'create_kernel'))[0]).to.equal('builtins.AssertionError');
    expect(aiozmqErrorValue(toWireError(new ArgumentsError('ping() takes 1'), 'ping'))[0]).to.equal('aiozmq.rpc.base.ParametersError');
    expect(aiozmqErrorValue(toWireError(new Error('boom'), 'ping'))[0]).to.equal('builtins.RuntimeError');
    expect(aiozmqErrorValue(toWireError(new InternalError('x'), 'ping'))[1]).to.deep.equal(['x', 'agent.InternalError']);
  });

  it('leaves a builtin error of another server as it is', () => {
    const e = remoteErrorOf('builtins.KeyError', ['kernel-x'], "KeyError('kernel-x')");
    expect(e.remoteType).to.equal('builtins.KeyError');
    expect(remoteErrorOf('builtins.KeyError', ['a', 'not.OurKind'], '').remoteType).to.equal('builtins.KeyError');
  });
});

describe("the stats' forms", () => {
  it('2018 hash: every known figure as a decimal string; an unknown one left out, never 0', () => {
    const written = new Set<string>();
    expect(legacyHash(figures({ cpu_used: 1234.4, net_rx_bytes: null }), written)).to.not.have.any.keys('net_rx_bytes', 'cpu_used');
    // cpu_used waits until every field the 2018 manager bills with it has been written once
    const next = legacyHash(figures({ cpu_used: 1300 }), written);
    expect(next).to.include({ cpu_used: '1300', net_rx_bytes: '7' });
    expect(legacyHash(figures({ net_tx_bytes: null, cpu_used: 1400 }), written))
      .to.include({ cpu_used: '1400' })
      .and.not.have.key('net_tx_bytes');
    expect(legacyHash(Object.fromEntries(FIGURE_KEYS.map((k) => [k, null])) as Figures, new Set())).to.deep.equal({});
  });

  it('modern map: the modern metric names, decimal strings, rates over two rounds; an unknown figure is NaN, never 0', () => {
    const forms = new ModernForms();
    const first = forms.kernel('k', figures({ cpu_used: 1000, mem_cur_bytes: 512 }), 1024, 10);
    expect(first.cpu_util).to.deep.equal({
      current: '0',
      capacity: '1000',
      pct: '0',
      unit_hint: 'percent',
      'stats.avg': '1000',
      'stats.max': '1000',
    });
    const second = forms.kernel('k', figures({ cpu_used: 1500, mem_cur_bytes: 256, net_rx_bytes: null }), 1024, 11);
    expect(second.cpu_util).to.include({ current: '500', pct: '50' }); // 500 ms of CPU per second: half a core
    expect(second.mem).to.include({ current: '256', capacity: '1024', pct: '25', 'stats.max': '512' });
    expect(second.net_rx).to.include({ current: 'NaN', pct: 'NaN' });
    const gone = forms.kernel('k', null, 1024, 12);
    for (const m of Object.values(gone)) expect(m.current).to.equal('NaN');
    const node = forms.nodeMap({ cpuPct: 25, cores: 2, memUsed: 1, memTotal: 4, diskUsed: null, diskTotal: 8 }, 10);
    expect(node.node.cpu_util).to.include({ current: '50', capacity: '200', pct: '25' });
    expect(node.node.disk).to.include({ current: 'NaN', capacity: '8' });
    expect(node.devices).to.deep.equal({});
  });
});
