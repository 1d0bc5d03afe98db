"""Calls a compute agent that has CURVE on with the stock aiozmq.rpc client,
as a CURVE-capable manager would: the agent's public key comes from its key
file through pyzmq's zmq.auth.load_certificate (the file format the agent
writes), the client's keys from the command line.

Usage: python3 aiozmq_curve_client.py tcp://HOST:PORT AGENT_KEY_FILE CLIENT_PUBLIC CLIENT_SECRET
Prints one JSON object: {"ping": "hello"} or {"error": "..."}.
"""
import asyncio
import json
import sys

import aiozmq.rpc
import zmq
import zmq.auth


async def main(addr, key_file, public, secret):
    server_public, _ = zmq.auth.load_certificate(key_file)
    client = await aiozmq.rpc.connect_rpc(timeout=3)
    client.transport.setsockopt(zmq.CURVE_SERVERKEY, server_public)
    client.transport.setsockopt(zmq.CURVE_PUBLICKEY, public.encode())
    client.transport.setsockopt(zmq.CURVE_SECRETKEY, secret.encode())
    await client.transport.connect(addr)
    try:
        out = {'ping': await client.call.ping('hello')}
    except Exception as exc:  # a refused client times out: that is an outcome to report
        out = {'error': type(exc).__name__}
    client.close()
    await client.wait_closed()
    print(json.dumps(out))


if __name__ == '__main__':
    asyncio.run(main(*sys.argv[1:5]))
