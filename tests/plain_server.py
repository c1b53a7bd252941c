"""A bare python-socketio server in its own process, for tests that count client-side tasks.

Usage: python tests/plain_server.py  (prints the port, serves until stdin closes)
"""

import asyncio
import sys

import socketio
from aiohttp import web


async def main() -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert isinstance(site._server, asyncio.Server)
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


asyncio.run(main())
