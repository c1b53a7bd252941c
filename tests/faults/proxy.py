"""A loopback TCP proxy whose links can be cut and restored, for fault tests.

It forwards bytes both ways between clients and one upstream (a gateway),
on the running asyncio loop::

    proxy = TcpProxy("127.0.0.1", gateway_port)
    await proxy.start()            # proxy.port: point the clients here
    proxy.cut()                    # every link closed; new ones refused
    proxy.cut(new="blackhole")     # ... or accepted and held silently
    proxy.restore()                # forwarding again
    await proxy.close()

``cut()`` aborts both sides of every current link, so the client and the
gateway each see their connection drop at once (as after a reset), which is
what the fault scenarios need: a cut that ends quickly must not wait out a
45 s Socket.IO ping timeout.

:class:`DelayProxy` also holds every chunk for a latency (plus or minus a
jitter) before passing it on, in order, both ways; set with ``delay(...)``,
cleared with ``delay(0)``. The network-namespace schedule
(``tests/faults/netns/schedule.py``) puts one between each pair of hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Literal

__all__ = ["DelayProxy", "TcpProxy"]

DELAY_QUEUE_CHUNKS = 256
"""Chunks (at most 64 KiB each) a :class:`DelayProxy` holds per direction of a link: 16 MiB at most.
When full, the proxy stops reading that side (TCP flow control pushes back on the sender)."""

NewLinks = Literal["refuse", "blackhole"]


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``upstream_host:upstream_port`` until cut.

    Args:
        upstream_host: Where to forward to.
        upstream_port: Its port.
        port: Port to listen on (0: a free one; see :attr:`port` after start).
        host: Address to listen on.
    """

    def __init__(
        self, upstream_host: str, upstream_port: int, *, port: int = 0, host: str = "127.0.0.1"
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = port
        self.host = host
        self.accepted = 0
        """Connections accepted (forwarded, refused or held)."""
        self.refused = 0
        """Connections closed at once because the proxy was cut."""
        self.held = 0
        """Connections accepted and held silently because the proxy was cut (blackhole)."""
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._held: set[asyncio.StreamWriter] = set()
        self._cut: NewLinks | None = None

    @property
    def is_cut(self) -> bool:
        """True between :meth:`cut` and :meth:`restore`."""
        return self._cut is not None

    @property
    def links(self) -> int:
        """Links forwarding right now."""
        return len(self._links)

    async def start(self) -> None:
        """Listen on :attr:`host` (127.0.0.1 by default)."""
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def cut(self, *, new: NewLinks = "refuse") -> None:
        """Abort every current link; then refuse new connections, or accept and hold them silently."""
        self._cut = new
        self.cuts += 1
        for link in list(self._links):
            link.abort()
        self._links.clear()

    def restore(self) -> None:
        """Forward new connections again; connections held while cut are closed."""
        self._cut = None
        for writer in list(self._held):
            writer.transport.abort()
        self._held.clear()

    async def close(self) -> None:
        """Stop listening and abort every connection."""
        self.cut()
        self.restore()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._cut == "refuse":
            self.refused += 1
            writer.transport.abort()
            return
        if self._cut == "blackhole":
            self.held += 1
            self._held.add(writer)  # never read, never answered: the client's connect times out
            return
        link = _Link(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        link.upstream = up_writer
        if self._cut is not None:  # cut while connecting upstream
            link.abort()
            return
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link)),
            asyncio.create_task(self._pump(up_reader, writer, link)),
        ]

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side closed: close the whole link (both directions), like a dead TCP path.
            if link in self._links:
                self._links.discard(link)
                link.abort()


class DelayProxy(TcpProxy):
    """A :class:`TcpProxy` that can delay what it forwards: ``latency`` +- ``jitter`` seconds per chunk.

    Each direction of a link is one queue of at most :data:`DELAY_QUEUE_CHUNKS`
    chunks, passed on in the order they were read (a chunk's time is never
    before the one read before it), so jitter spreads the delays without
    reordering the stream.

    Args:
        seed: Seed of the jitter's random numbers.
    """

    def __init__(
        self, upstream_host: str, upstream_port: int, *, port: int = 0, host: str = "127.0.0.1", seed: int = 0
    ) -> None:
        super().__init__(upstream_host, upstream_port, port=port, host=host)
        self.latency = 0.0
        self.jitter = 0.0
        self.delayed = 0
        """Chunks held for a delay so far."""
        self._rng = random.Random(seed)

    def delay(self, latency: float, jitter: float = 0.0) -> None:
        """Delay every chunk from now on by ``latency`` +- ``jitter`` seconds (``delay(0)``: none)."""
        self.latency = max(0.0, latency)
        self.jitter = max(0.0, min(jitter, self.latency))

    def _due(self, now: float, previous: float) -> float:
        if self.latency <= 0:
            return max(now, previous)
        self.delayed += 1
        spread = self._rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0
        return max(now + self.latency + spread, previous)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(DELAY_QUEUE_CHUNKS)
        sender = asyncio.create_task(self._send(queue, writer, link))
        link.tasks.append(sender)
        loop = asyncio.get_running_loop()
        due = 0.0
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                due = self._due(loop.time(), due)
                await queue.put((due, data))
            await queue.put((due, b""))  # the end, after what is still held
        except (OSError, asyncio.IncompleteReadError):
            self._drop(link)

    async def _send(
        self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, data = await queue.get()
                pause = due - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)  # the latency being injected
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            self._drop(link)

    def _drop(self, link: _Link) -> None:
        if link in self._links:
            self._links.discard(link)
            link.abort()
