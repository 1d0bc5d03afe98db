/**
 * Argument binding and dispatch, without a socket: the declarations drive the
 * checks, and the one catch maps every failure to the right wire error.
 */
import { expect } from 'chai';
import { AgentError, KernelNotFoundError, ParametersError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { Dispatcher, implement, notImplemented } from '../../src/rpc/dispatcher.js';
import { methods } from '../../src/rpc/methods.js';
import { describeMethods } from '../../src/rpc/listing.js';
import { bindArguments, p } from '../../src/rpc/params.js';
import type { ParsedRequest } from '../../src/wire/frames.js';

const req = (method: string, args: unknown[], kwargs: Record<string, unknown> = {}): ParsedRequest => ({
  kind: 'request',
  envelope: [],
  header: { pid: 1, random: 1, requestId: 1, time: 0 },
  method,
  args,
  kwargs,
});

describe('argument binding', () => {
  const params = [p.str('a', { maxLength: 3 }), p.optional(p.int('b', { min: 0, max: 9 }))] as const;

  it('binds positional and keyword arguments like Python', () => {
    expect(bindArguments('f', params, ['x', 1], {})).to.deep.equal(['x', 1]);
    expect(bindArguments('f', params, [], { a: 'x', b: 2 })).to.deep.equal(['x', 2]);
    expect(bindArguments('f', params, ['x'], {})).to.deep.equal(['x', undefined]);
  });

  it('names the parameter and the problem', () => {
    const fails = (args: unknown[], kwargs: Record<string, unknown>, re: RegExp) =>
      expect(() => bindArguments('f', params, args, kwargs)).to.throw(ParametersError, re);
    fails([], {}, /missing a required argument: 'a'/);
    fails(['x', 1, 2], {}, /at most 2 arguments \(3 given\)/);
    fails(['x'], { a: 'y' }, /multiple values for argument 'a'/);
    fails(['x'], { c: 1 }, /unexpected keyword argument 'c'/);
    fails([5], {}, /'a' must be a str, got number 5/);
    fails(['long'], {}, /'a' must be 0 to 3 characters long, got 4/);
    fails(['x', 10], {}, /'b' must be between 0 and 9, got 10/);
    fails(['x', 1.5], {}, /'b' must be an int/);
    fails([null], {}, /'a' must be a str, got nil/);
  });

  it('checks kernel ids for a safe charset', () => {
    const id = methods.interrupt_kernel.params;
    expect(bindArguments('k', id, ['8d1e2b8a-0f3c-4a51'], {})).to.deep.equal(['8d1e2b8a-0f3c-4a51']);
    for (const bad of ['../etc', '', 'a/b', '-x', 'x'.repeat(65), 'a b']) {
      expect(() => bindArguments('k', id, [bad], {}), bad).to.throw(ParametersError);
    }
  });
});

describe('dispatcher', () => {
  class Boom extends AgentError {
    static override readonly wireName = 'agent.Boom';
  }
  const dispatcher = new Dispatcher(
    [
      implement(methods.ping, (msg) => msg),
      implement(methods.get_logs, (id) => {
        throw new KernelNotFoundError(id);
      }),
      implement(methods.interrupt_kernel, () => {
        throw new TypeError('cannot read x of undefined');
      }),
      implement(methods.get_completions, (id, text, opts) => ({ status: 'finished', completions: [id, text, JSON.stringify(opts)] })),
      implement(methods.destroy_kernel, () => {
        throw new Boom('typed failure');
      }),
      notImplemented(methods.execute),
    ],
    silentLogger(),
  );

  it('calls the handler with checked arguments', async () => {
    expect(await dispatcher.handle(req('ping', ['hi']))).to.deep.equal({ ok: true, value: 'hi' });
  });

  it('answers an unknown method with aiozmq NotFoundError carrying the name', async () => {
    const r = await dispatcher.handle(req('nosuch', []));
    expect(r).to.deep.equal({
      ok: false,
      error: { type: 'aiozmq.rpc.base.NotFoundError', args: ['nosuch'], repr: "NotFoundError('nosuch')" },
    });
  });

  it('answers bad arguments with aiozmq ParametersError', async () => {
    const r = await dispatcher.handle(req('ping', []));
    expect(r.ok === false && r.error.type).to.equal('aiozmq.rpc.base.ParametersError');
    expect(r.ok === false && r.error.args[0]).to.match(/missing a required argument: 'msg'/);
  });

  it('keeps the type name of our errors and maps anything else to an internal error', async () => {
    const nf = await dispatcher.handle(req('get_logs', ['k1']));
    expect(nf.ok === false && nf.error.type).to.equal('agent.KernelNotFound');
    const typed = await dispatcher.handle(req('destroy_kernel', ['k1']));
    expect(typed.ok === false && typed.error).to.deep.include({ type: 'agent.Boom', args: ['typed failure'] });
    const internal = await dispatcher.handle(req('interrupt_kernel', ['k1']));
    expect(internal.ok === false && internal.error.type).to.equal('agent.InternalError');
    expect(internal.ok === false && internal.error.args[0]).to.match(/interrupt_kernel.*cannot read x.*agent log/);
  });

  it('says that a method of the contract is not implemented yet, after checking its arguments', async () => {
    const bad = await dispatcher.handle(req('execute', [9]));
    expect(bad.ok === false && bad.error.type).to.equal('aiozmq.rpc.base.ParametersError');
    const r = await dispatcher.handle(req('execute', [2, 'k1', null, 'query', 'print(1)', {}]));
    expect(r.ok === false && r.error.type).to.equal('agent.NotImplemented');
    expect(r.ok === false && r.error.args[0]).to.match(/execute .* not implemented/);
  });

  it("accepts both argument forms of get_completions (the 2018 manager's and the contract's)", async () => {
    const now = await dispatcher.handle(req('get_completions', ['k1', 'pri', {}]));
    const old = await dispatcher.handle(req('get_completions', ['k1', 'query', 'pri', {}]));
    expect(now).to.deep.equal(old);
    expect(now.ok && now.value).to.deep.equal({ status: 'finished', completions: ['k1', 'pri', '{}'] });
  });

  it('answers malformed requests with ParametersError', async () => {
    const r = await dispatcher.handle({ kind: 'malformed', envelope: [], header: req('x', []).header, method: 'ping', reason: 'bad args' });
    expect(r).to.deep.equal({
      ok: false,
      error: { type: 'aiozmq.rpc.base.ParametersError', args: ['bad args'], repr: "ParametersError('bad args')" },
    });
  });

  it('refuses new calls with a retryable error once draining', async () => {
    const d = new Dispatcher([implement(methods.ping, (m) => m)], silentLogger());
    d.stopAccepting();
    const r = await d.handle(req('ping', ['x']));
    expect(r.ok === false && r.error.type).to.equal('agent.ShuttingDown');
  });

  it('lists every method of the contract from the declarations', () => {
    const listing = describeMethods();
    for (const name of Object.keys(methods)) expect(listing).to.include(`${name}(`);
    expect(listing).to.include('also accepted: (kernel_id');
  });
});
