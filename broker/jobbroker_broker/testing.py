"""pytest plugin (the ``pytest11`` entry point): ``jobbroker_server``, a real broker for a test
session, on an embedded Redis in a temporary directory, or on ``REDIS_URL`` when it is set.

The broker runs in-process, on an event loop of its own thread, so sync and async tests use it
alike, with the test clock on (``Settings.test_clock``): :attr:`TestServer.clock` moves its
queues' time, for the ``jobbroker_clock`` fixture. Its fixtures for clients and workers are in
:mod:`jobbroker.testing.plugin`.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from .server.test_clock import QueueClocks

T = TypeVar("T")

REDIS_URL_ENV = "REDIS_URL"
STOP_GRACE_S = 1.0


@dataclass(frozen=True)
class TestServer:
    """A broker running for the tests."""

    __test__ = False

    address: str
    """Its gRPC target (``127.0.0.1:PORT``)."""
    redis_url: str
    """The Redis it stores jobs in."""
    clock: BrokerClock
    """Moves its queues' time (``jobbroker.testing.TestClock`` wraps it)."""


class BrokerClock:
    """The test broker's queue clocks, called from any thread (the tests')."""

    def __init__(self, clocks: QueueClocks, loop: asyncio.AbstractEventLoop) -> None:
        self._clocks = clocks
        self._loop = loop

    def _call(self, call: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(call, self._loop).result(timeout=60)

    def advance(self, queues: Sequence[str], ms: int) -> None:
        """Move the time of `queues` forward by `ms`; returns once the broker did what fell
        due (delayed jobs and retries waiting, leases reaped, lifespans ended, schedules fired)."""
        self._call(self._clocks.advance(queues, ms))

    def now_ms(self, queue: str) -> int:
        """`queue`'s "now" (ms since the epoch), as the broker sees it."""
        return self._call(self._clocks.now_ms(queue))


@pytest.fixture(scope="session")
def jobbroker_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    """One broker for the session (give each test its own queue: ``jobbroker_queue``)."""
    from .storage.embedded import EmbeddedRedis

    embedded: EmbeddedRedis | None = None
    redis_url = os.environ.get(REDIS_URL_ENV, "")
    if not redis_url:
        # Started here, on the main thread: the embedded Redis dies with the thread starting it.
        embedded = EmbeddedRedis(tmp_path_factory.mktemp("jobbroker-redis"))
        redis_url = embedded.start()
    try:
        with _BrokerThread(redis_url) as thread:
            clocks = thread.broker.test_clock
            if clocks is None:  # pragma: no cover - the broker is started with it just above
                raise RuntimeError("the test broker runs no test clock")
            clock = BrokerClock(clocks, thread.loop)
            yield TestServer(f"127.0.0.1:{thread.broker.port}", redis_url, clock)
    finally:
        if embedded is not None:
            embedded.stop()


class _BrokerThread:
    """The broker on an event loop in a thread of its own, started on entering."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="jobbroker-test-broker")

    def __enter__(self) -> _BrokerThread:
        from .server.app import Broker
        from .settings import Settings

        self.thread.start()
        settings = Settings(
            port=0, redis_url=self.redis_url, shutdown_grace=STOP_GRACE_S, test_clock=True
        )
        self.broker = Broker(settings)
        started: Future[int] = asyncio.run_coroutine_threadsafe(self.broker.start(), self.loop)
        try:
            started.result(timeout=60)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.broker.stop(STOP_GRACE_S), self.loop).result(60)
        finally:
            self._close()

    def _close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()
