"""Calls a compute agent as the 2018 manager (backend.ai-manager 1.3) does, with the stock aiozmq.rpc client.

Usage:
  python3 manager_2018.py errors tcp://HOST:PORT
      Makes calls that fail and prints, per call, what the 2018 manager would
      answer its user: it keeps aiozmq's NotFoundError and ParametersError and
      any error whose name is not a builtin (GenericError) out of its typed path
      (a bare internal-server-error); a builtin becomes
      AgentError(type, args), shown as agent-details "Name(args...)".
  python3 manager_2018.py abandon tcp://HOST:PORT KERNEL_ID LANG
      create_kernel with the manager's 3 s budget and a bootstrap script that
      makes the create slower than that; then closes the DEALER, as the
      manager does when it gives up.
"""
import asyncio
import json
import sys

import aiozmq.rpc
import zmq
from aiozmq.rpc.base import GenericError, NotFoundError, ParametersError


def as_manager(exc):
    """What the 2018 manager's RPCContext and handle_kernel_exception make of a failure."""
    if isinstance(exc, (GenericError, NotFoundError, ParametersError)):
        return {'answer': 'internal-server-error', 'raw': type(exc).__name__}
    inner = type(exc)
    assert issubclass(inner, Exception)  # what its handler checks with issubclass(e.args[0], ...)
    return {'answer': 'agent-error', 'exception': '%s(%s)' % (inner.__name__, ', '.join(repr(a) for a in exc.args)),
            'name': inner.__name__, 'args': list(exc.args)}


async def errors(addr):
    client = await aiozmq.rpc.connect_rpc(connect=addr, timeout=10)
    out = {}

    async def call(key, coro):
        try:
            out[key] = {'answer': 'ok', 'value': await coro}
        except Exception as exc:  # each failure is an outcome to report
            out[key] = as_manager(exc)

    await call('execute', client.call.execute(2, 'no-such-kernel', None, 'query', 'print(1)', {}))
    await call('interrupt_kernel', client.call.interrupt_kernel('no-such-kernel'))
    await call('get_logs', client.call.get_logs('no-such-kernel'))
    await call('destroy_kernel', client.call.destroy_kernel('no-such-kernel'))
    await call('create_too_big', client.call.create_kernel('too-big-kernel', {
        'lang': 'python:3-debian', 'limits': {'cpu_slot': 1.0, 'mem_slot': 16 * 1024 * 1024, 'gpu_slot': 0.0},
        'mounts': [], 'environ': {}}))
    await call('create_missing_image', client.call.create_kernel('no-image-kernel', {
        'lang': 'python:0-nosuch', 'limits': {'cpu_slot': 1.0, 'mem_slot': 128, 'gpu_slot': 0.0},
        'mounts': [], 'environ': {}}))
    client.close()
    await client.wait_closed()
    return out


async def abandon(addr, kid, lang):
    client = await aiozmq.rpc.connect_rpc(connect=addr, timeout=3)  # the manager's budget for create_kernel
    try:
        await client.call.create_kernel(kid, {
            'lang': lang, 'limits': {'cpu_slot': 1.0, 'mem_slot': 128, 'gpu_slot': 0.0},
            'mounts': [], 'environ': {}, 'bootstrap_script': 'sleep 8\n'})
        result = {'outcome': 'created'}
    except asyncio.TimeoutError:
        result = {'outcome': 'timeout'}
    client.transport.setsockopt(zmq.LINGER, 50)
    client.close()
    await client.wait_closed()
    return result


def main():
    mode, addr = sys.argv[1], sys.argv[2]
    coro = errors(addr) if mode == 'errors' else abandon(addr, sys.argv[3], sys.argv[4])
    print(json.dumps(asyncio.run(coro), default=str))


if __name__ == '__main__':
    main()
