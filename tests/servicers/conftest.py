"""The broker's servicers behind its gate on a grpc_testing server (see aio_bridge.py), over
real Redis; no gRPC transport. Tests here are plain sync functions, as grpc_testing expects."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jobbroker_broker.loops.events import EventHub
from jobbroker_broker.loops.maintenance import Maintenance
from jobbroker_broker.loops.registry import WorkerRegistry
from jobbroker_broker.metrics import Metrics
from jobbroker_broker.server import tokens
from jobbroker_broker.server.gate import Gate
from jobbroker_broker.server.services.common import Parts
from jobbroker_broker.server.streams import OpenStreams
from jobbroker_broker.server.token_watch import TokenWatch
from jobbroker_broker.settings import Settings
from jobbroker_broker.storage.connection import RedisConnection
from jobbroker_broker.storage.store import Store

from .aio_bridge import LoopThread, testing_server
from .calls import Caller, bearer


@pytest.fixture(scope="session")
def aio_loop() -> Iterator[LoopThread]:
    """The event loop the servicers run on (in a thread of its own)."""
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture
def parts(redis_url: str, aio_loop: LoopThread) -> Iterator[Parts]:
    """What the broker gives its servicers (as Broker._open_redis and _build_server make it),
    on the session's Redis; no loop of the broker's runs."""
    settings = Settings(redis_url=redis_url)

    async def make() -> tuple[Parts, RedisConnection]:
        connection = RedisConnection(settings)
        store = Store(connection.client, settings, Metrics())
        hub = EventHub(store, connection.blocking)
        streams = OpenStreams(settings.max_streams_per_token)
        built = Parts(settings, store, hub, Maintenance(store), WorkerRegistry(store), streams)
        return built, connection

    built, connection = aio_loop.run(make())
    yield built

    aio_loop.cancel_calls()

    async def close() -> None:
        await built.hub.close()
        await connection.aclose()

    aio_loop.run(close())


@pytest.fixture
def served(parts: Parts, aio_loop: LoopThread) -> Caller:
    """The broker's services with authentication off."""
    return Caller(testing_server(parts, Gate(parts.settings, None), aio_loop))


@dataclass
class Secured:
    """The broker's services behind a gate that reads ``token_file``."""

    caller: Caller
    watch: TokenWatch
    ids: dict[str, str] = field(default_factory=dict)

    def token(self, *grants: str, name: str = "test") -> str:
        """A new token with these grants, in force at once (the broker's reload path)."""
        token, entry = tokens.create(self.watch.path, name, list(grants))
        self.ids[token] = entry.id
        self.watch.reload()
        return token

    def revoke(self, token: str) -> None:
        tokens.revoke(self.watch.path, self.ids[token])
        self.watch.reload()

    def call(self, method: str, request: Any, token: str | None) -> Any:
        return self.caller.call(method, request, bearer(token) if token is not None else ())


@pytest.fixture
def secured(parts: Parts, aio_loop: LoopThread, tmp_path: Path) -> Secured:
    token_file = tmp_path / "tokens.toml"
    tokens.save(token_file, tokens.TokenBook())
    gate = Gate(parts.settings, tokens.load(token_file))
    server = testing_server(parts, gate, aio_loop)
    return Secured(Caller(server), TokenWatch(str(token_file), gate, parts.streams))
