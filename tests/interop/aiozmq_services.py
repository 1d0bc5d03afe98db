"""Calls the RPCs of docs/service-ports.rst with the stock aiozmq.rpc client, as
a late-2018 (and a 2017) manager does: ping_kernel, interrupt_kernel with a
mode, start_service / shutdown_service of the image's Jupyter app, and an
HTTP GET of /api on the app's reported host port.

Usage: python3 aiozmq_services.py tcp://HOST:PORT LANG
Prints one JSON object with the outcome of each step.
"""
import asyncio
import json
import sys
import urllib.request

import aiozmq.rpc


def outcome(exc):
    if isinstance(exc, aiozmq.rpc.GenericError):
        return {'error': 'GenericError', 'type': exc.exc_type, 'args': list(exc.arguments)}
    return {'error': type(exc).__name__, 'args': [str(a) for a in exc.args]}


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return {'status': r.status, 'body': json.loads(r.read().decode('utf-8'))}
    except Exception as exc:
        return {'error': type(exc).__name__}


async def main(addr, lang):
    client = await aiozmq.rpc.connect_rpc(connect=addr, timeout=120)
    out = {}

    async def call(key, coro):
        try:
            out[key] = await coro
        except Exception as exc:
            out[key] = outcome(exc)
        return out[key]

    kid = 'svc-%d' % (asyncio.get_running_loop().time() * 1000)
    info = await call('create', client.call.create_kernel(kid, {
        'lang': lang, 'limits': {'cpu_slot': 1.0, 'mem_slot': 1024, 'gpu_slot': 0.0}, 'mounts': [], 'environ': {}}))
    await call('ping_kernel', client.call.ping_kernel(kid))
    await call('interrupt_2017', client.call.interrupt_kernel(kid, 'query'))
    await call('interrupt_2018', client.call.interrupt_kernel(kid))
    await call('ping_unknown', client.call.ping_kernel('no-such-kernel'))
    await call('start', client.call.start_service(kid, 'jupyter', {}))
    port = next((p['host_port'] for p in (info.get('service_ports') or []) if p['name'] == 'jupyter'), None)
    host = info.get('kernel_host', '127.0.0.1')
    out['api'] = http_get('http://%s:%s/api' % (host, port)) if port else {'error': 'no jupyter service port'}
    await call('start_again', client.call.start_service(kid, 'jupyter', {}))
    await call('start_unknown', client.call.start_service(kid, 'nosuch', {}))
    await call('list', client.call.list_kernels())
    await call('shutdown', client.call.shutdown_service(kid, 'jupyter'))
    out['api_after'] = http_get('http://%s:%s/api' % (host, port)) if port else {}
    await call('shutdown_again', client.call.shutdown_service(kid, 'jupyter'))
    await call('destroy', client.call.destroy_kernel(kid))
    client.close()
    print(json.dumps(out, default=str))


if __name__ == '__main__':
    asyncio.run(main(sys.argv[1], sys.argv[2]))
