"""Calls a compute agent with the stock aiozmq.rpc client, as the 2018 manager does.

Usage: python3 aiozmq_client.py tcp://HOST:PORT LANG
Prints one JSON object with the outcome of each call. LANG is a kernel image
("name:tag" without the prefix) on the agent's node.
"""
import asyncio
import json
import sys

import aiozmq.rpc


def outcome(exc):
    if isinstance(exc, aiozmq.rpc.GenericError):
        return {'error': 'GenericError', 'type': exc.exc_type, 'args': list(exc.arguments)}
    return {'error': type(exc).__name__, 'args': [str(a) for a in exc.args]}


async def kernel_round_trip(client, lang):
    """create_kernel, execute print("hello") until finished, destroy_kernel."""
    kid = 'interop-%d' % (asyncio.get_running_loop().time() * 1000)
    info = await client.call.create_kernel(kid, {
        'lang': lang, 'limits': {'cpu_slot': 1.0, 'mem_slot': 256, 'gpu_slot': 0.0},
        'mounts': [], 'environ': {}})
    out, result = '', await client.call.execute(2, kid, None, 'query', 'print("hello")', {})
    while True:
        out += ''.join(d for t, d in result['console'] if t == 'stdout')
        if result['status'] != 'continued':
            break
        result = await client.call.execute(2, kid, result['runId'], 'continue', '', {})
    stats = await client.call.destroy_kernel(kid)
    return {'ports': [info['repl_in_port'], info['repl_out_port'], info['stdin_port'], info['stdout_port']],
            'status': result['status'], 'stdout': out, 'stats_keys': sorted(stats or {})}


async def main(addr, lang):
    client = await aiozmq.rpc.connect_rpc(connect=addr, timeout=10)
    out = {}

    async def call(key, coro):
        try:
            out[key] = await coro
        except Exception as exc:  # each failure is an expected outcome to report
            out[key] = outcome(exc)

    await call('ping', client.call.ping('hello'))
    await call('ping_unicode', client.call.ping('héllo ☃'))
    await call('nosuch', client.call.nosuch())
    await call('wrong_count', client.call.ping())
    await call('wrong_type', client.call.ping(42))
    await call('create_kernel', client.call.create_kernel(
        '8d1e2b8a-0f3c-4a51-9a3e-4c1b7f0e2d11',
        {'lang': 'python:3.6-debian', 'limits': {'mem_slot': 256, 'cpu_slot': 1.0, 'gpu_slot': 0.0},
         'mounts': [], 'environ': {'A': '1'}}))
    await call('execute', client.call.execute(2, '8d1e2b8a-0f3c-4a51-9a3e-4c1b7f0e2d11', None, 'query', 'print(1)', {}))
    await call('kernel', kernel_round_trip(client, lang))
    replies = await asyncio.gather(*(client.call.ping('m%d' % i) for i in range(100)))
    out['many'] = sum(1 for i, r in enumerate(replies) if r == 'm%d' % i)
    client.close()
    await client.wait_closed()
    print(json.dumps(out))


if __name__ == '__main__':
    asyncio.run(main(sys.argv[1], sys.argv[2]))
