"""A TCP proxy on 127.0.0.1 that counts the bytes a gateway sends its clients (what they receive)."""

from __future__ import annotations

import asyncio
import contextlib


class CountingProxy:
    """Forwards connections to ``host:port`` and counts the bytes going back to the clients.

    Everything a client receives (the HTTP upgrade, websocket frames, pings) passes here,
    so :attr:`received` is what a client's network interface would count, TCP headers aside.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.received = 0
        """Bytes sent from the gateway to the clients since the start (or the last :meth:`take`)."""
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> CountingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        for task in list(self._pipes):
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task

    def take(self) -> int:
        """The bytes received since the last call; start counting afresh."""
        taken, self.received = self.received, 0
        return taken

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
        for task in (
            asyncio.create_task(self._pipe(reader, upstream_writer, count=False)),
            asyncio.create_task(self._pipe(upstream_reader, writer, count=True)),
        ):
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool) -> None:
        try:
            while chunk := await reader.read(1 << 16):
                if count:
                    self.received += len(chunk)
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
