"""Fixtures of the client tests: brokers on an event-loop thread of their own, and clients.

The brokers run on a private loop thread, not on the tests' loop, because the synchronous
``Client`` blocks the thread that calls it: a broker on the calling loop could not answer.
Tests are written once, as coroutines, and run against both clients: ``client`` is an
``AsyncClient`` or a ``Client`` whose blocking calls run in a worker thread (see support.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import pytest
from jobbroker import AsyncClient, Client
from jobbroker_broker.server.app import Broker
from jobbroker_broker.settings import Settings
from ports import free_port

from .support import Api, AsyncApi, FakeWorker, SyncApi

T = TypeVar("T")

SETTINGS = Settings(port=0, maintenance_interval=0.05, health_interval=0.2, shutdown_grace=1.0)


@dataclass
class RunningBroker:
    """A broker serving on 127.0.0.1:``port``."""

    broker: Broker
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class BrokerHost:
    """An event loop on a thread of its own, where brokers are started and stopped."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="brokers", daemon=True)
        self.thread.start()

    async def _on_loop(self, call: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, self.loop))

    async def start(self, redis_url: str, port: int = 0, **overrides: Any) -> RunningBroker:
        """A new broker on ``port`` (0: a free one), with settings overridden."""
        broker = Broker(replace(SETTINGS, redis_url=redis_url, port=port, **overrides))
        bound = await self._on_loop(broker.start())
        return RunningBroker(broker, bound)

    async def stop(self, running: RunningBroker) -> None:
        """Stop a broker at once (again is fine); its calls in flight end UNAVAILABLE."""
        await asyncio.wait_for(self._on_loop(running.broker.stop(0)), 10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture(scope="session")
def broker_host() -> Iterator[BrokerHost]:
    """The thread the tests' brokers run on."""
    host = BrokerHost()
    yield host
    host.close()


BrokerFactory = Callable[..., Coroutine[Any, Any, RunningBroker]]


@pytest.fixture
async def start_broker(broker_host: BrokerHost, redis_url: str) -> AsyncIterator[BrokerFactory]:
    """Start brokers (``await start_broker(port=..., url=<redis url>, **settings)``); every
    one is stopped after the test. Each gets a port below the ephemeral range unless given one,
    so that a test can start a broker again on the port of one it stopped (see ports.py)."""
    started: list[RunningBroker] = []

    async def start(*, port: int = 0, url: str | None = None, **overrides: Any) -> RunningBroker:
        running = await broker_host.start(url or redis_url, port or free_port(), **overrides)
        started.append(running)
        return running

    yield start
    for running in started:
        await broker_host.stop(running)


@pytest.fixture(scope="session")
async def broker(broker_host: BrokerHost, redis_url: str) -> AsyncIterator[RunningBroker]:
    """The broker the tests share (each test has its own queue). Tests that stop a broker
    start one of their own with ``start_broker``."""
    running = await broker_host.start(redis_url)
    yield running
    await broker_host.stop(running)


@pytest.fixture(params=["async", "sync"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which client the test runs against."""
    return str(request.param)


ClientFactory = Callable[..., Api]


@pytest.fixture
async def make_client(kind: str) -> AsyncIterator[ClientFactory]:
    """Make clients of this test's kind (``make_client(address, **client_options)``); each is
    closed after the test."""
    made: list[Api] = []

    def make(address: Any, **options: Any) -> Api:
        api: Api
        if kind == "async":
            api = AsyncApi(AsyncClient(address, **options))
        else:
            api = SyncApi(Client(address, **options))
        made.append(api)
        return api

    yield make
    for api in made:
        await asyncio.wait_for(api.close(), 10)


@pytest.fixture
def client(make_client: ClientFactory, broker: RunningBroker) -> Api:
    """A client of this test's kind, connected to the shared broker."""
    return make_client(broker.address)


@pytest.fixture
async def worker(broker: RunningBroker, queue: str) -> AsyncIterator[FakeWorker]:
    """A worker of this test's queue, played with the generated WorkerService stubs."""
    fake = FakeWorker(broker.address, queue)
    yield fake
    await fake.close()
