"""A connection that dies silently (a NAT or load balancer drops it: no FIN, no RST, nothing
gets through any more) is noticed by the client's keepalive pings, and a stream resumes on a
new connection; without them it would wait on the dead one until TCP gives up, minutes later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from jobbroker import AsyncClient, EventType

from .conftest import RunningBroker

FAST_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 1_000),
    ("grpc.keepalive_timeout_ms", 1_000),
    ("grpc.http2.ping_timeout_ms", 1_000),
]
"""The client's keepalive shortened from 20 s + 10 s, so that the test takes seconds."""

NOTICED_WITHIN = 30.0
"""Seconds the stream has to come back: about 2 s with the pings, never without them."""


@dataclass
class Link:
    """One proxied connection; once dead, bytes in either direction vanish."""

    dead: bool = False
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


class BlackHoleProxy:
    """A TCP proxy to the broker that can make its open connections go silent."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.links: list[Link] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def black_hole(self) -> None:
        """Every connection open now stops passing bytes, and is never closed; new ones work."""
        for link in self.links:
            link.dead = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        link = Link(writers=[writer, up_writer])
        self.links.append(link)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(source, sink, link))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: Link) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65_536):
                if not link.dead:
                    sink.write(data)
                    await sink.drain()
            if not link.dead:
                sink.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for link in self.links:
            for writer in link.writers:
                writer.close()


@pytest.fixture
async def proxy(broker: RunningBroker) -> AsyncIterator[BlackHoleProxy]:
    running = BlackHoleProxy(broker.port)
    await running.start()
    yield running
    await running.close()


async def test_a_stream_on_a_connection_that_went_silent_resumes_on_a_new_one(
    broker: RunningBroker, proxy: BlackHoleProxy, queue: str
) -> None:
    async with (
        AsyncClient(broker.address) as producer,
        AsyncClient(f"127.0.0.1:{proxy.port}", channel_options=FAST_KEEPALIVE) as watcher,
    ):
        events = watcher.watch_events(queue, timeout=NOTICED_WITHIN + 30)
        first = asyncio.ensure_future(anext(events))
        n = 0
        while not first.done():  # until the watch is open (it sees events from then on)
            await producer.add(queue, "before", {}, job_id=f"before-{n}")
            n += 1
            await asyncio.wait({first}, timeout=0.2)
        assert first.result().job_id.startswith("before-")

        proxy.black_hole()
        await producer.add(queue, "after", {}, job_id="after")
        async with asyncio.timeout(NOTICED_WITHIN):
            async for event in events:
                if event.job_id == "after" and event.type == EventType.ADDED:
                    break
        await events.aclose()
    assert len(proxy.links) >= 2, "the stream came back without a new connection"
