"""The reference server of the RPC figure: a stock aiozmq.rpc server serving `ping`.

Usage: /usr/bin/python3 aiozmq_server.py tcp://127.0.0.1:PORT
Runs with Debian's python3-aiozmq (the framing the agent speaks, docs/wire-contract.rst, "RPC"). Prints "ready" on stdout once bound; stops on SIGTERM or SIGINT.
"""
import asyncio
import signal
import sys

import aiozmq.rpc


class Handler(aiozmq.rpc.AttrHandler):
    @aiozmq.rpc.method
    def ping(self, msg):
        return msg


async def main(addr):
    server = await aiozmq.rpc.serve_rpc(Handler(), bind=addr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print('ready', flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


if __name__ == '__main__':
    asyncio.run(main(sys.argv[1]))
