"""A real broker (in-process grpc.aio server on a free port) over real Redis, for worker tests.

The start/stop logic is the integration tests' own, copied rather than imported: a module named
``conftest`` must not be imported by name (two of them would shadow each other).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import grpc
import pytest
from jobbroker.v1 import job_service_pb2_grpc
from jobbroker_broker.server.app import Broker
from jobbroker_broker.settings import Settings
from ports import free_port

from .worker_harness import BrokerFactory, Running

TEST_SETTINGS = Settings(port=0, maintenance_interval=0.05, health_interval=0.2, shutdown_grace=1.0)


async def start_broker(redis_url: str, **overrides: object) -> Running:
    settings = replace(TEST_SETTINGS, redis_url=redis_url, **overrides)  # type: ignore[arg-type]
    broker = Broker(settings)
    port = await broker.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(address)
    return Running(broker, port, address, channel, job_service_pb2_grpc.JobServiceStub(channel))


async def stop_broker(running: Running) -> None:
    await running.channel.close()
    await running.broker.stop(0.5)


@pytest.fixture
def quiet_redis_url(private_redis: Any) -> str:
    """A redis-server of the test's own (about 20 ms to start). Worker tests time handlers in
    tenths of seconds; the broker's maintenance loop visits every queue a Redis ever held, and
    the shared one may hold thousands, which would slow the in-process broker's event loop."""
    return str(private_redis.url)


@pytest.fixture
async def broker(quiet_redis_url: str) -> AsyncIterator[Running]:
    """A broker of its own for each test (cheap: about 10 ms to start)."""
    running = await start_broker(quiet_redis_url)
    yield running
    await stop_broker(running)


@pytest.fixture
async def broker_factory(quiet_redis_url: str) -> AsyncIterator[BrokerFactory]:
    """Start brokers (``await factory(port=...)``); every one still running is stopped after.
    Each gets a port below the ephemeral range unless given one, so that a test can start a
    broker again on the port of one it stopped (see ports.py)."""
    started: list[Running] = []

    async def start(**overrides: object) -> Running:
        overrides.setdefault("port", free_port())
        running = await start_broker(quiet_redis_url, **overrides)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.broker.server is not None:
            await stop_broker(running)
