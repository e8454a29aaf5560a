"""Fixtures of the guide's-jobs tests: a real broker (in-process grpc.aio server on a free
port) over the session's real Redis, and an AsyncClient of it.

The start/stop logic follows tests/integration's, copied rather than imported: a module named
``conftest`` must not be imported by name (two of them would shadow each other).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from jobbroker import AsyncClient
from jobbroker_broker.server.app import Broker
from jobbroker_broker.settings import Settings

TEST_SETTINGS = Settings(port=0, maintenance_interval=0.05, health_interval=0.2, shutdown_grace=1.0)


@dataclass
class Running:
    broker: Broker
    address: str


async def start_broker(redis_url: str, **overrides: object) -> Running:
    settings = replace(TEST_SETTINGS, redis_url=redis_url, **overrides)  # type: ignore[arg-type]
    broker = Broker(settings)
    port = await broker.start()
    return Running(broker, f"127.0.0.1:{port}")


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[Running]:
    running = await start_broker(redis_url)
    yield running
    await running.broker.stop(0.5)


@pytest.fixture
async def client(broker: Running) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(broker.address, retries=0) as made:
        yield made


@pytest.fixture
async def private_broker(private_redis: Any) -> AsyncIterator[Running]:
    """A broker over a redis-server of the test's own: jobbroker-worker serves the guide's
    fixed queue names (ai-tasks, email), which no shared Redis may see."""
    running = await start_broker(private_redis.url)
    yield running
    await running.broker.stop(0.5)


@pytest.fixture
async def private_client(private_broker: Running) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(private_broker.address, retries=0) as made:
        yield made
