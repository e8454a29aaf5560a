"""A real broker (in-process grpc.aio server on a free port) over real Redis, and its stubs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import grpc
import pytest
from jobbroker.v1 import job_service_pb2_grpc, worker_service_pb2_grpc
from jobbroker_broker.server.app import Broker
from jobbroker_broker.settings import Settings


@dataclass
class Running:
    """A running broker and stubs connected to it."""

    broker: Broker
    address: str
    channel: grpc.aio.Channel
    jobs: job_service_pb2_grpc.JobServiceStub
    workers: worker_service_pb2_grpc.WorkerServiceStub


TEST_SETTINGS = Settings(port=0, maintenance_interval=0.05, health_interval=0.2, shutdown_grace=1.0)


async def start_broker(redis_url: str, **overrides: object) -> Running:
    settings = replace(TEST_SETTINGS, redis_url=redis_url, **overrides)  # type: ignore[arg-type]
    broker = Broker(settings)
    port = await broker.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(address)
    return Running(
        broker,
        address,
        channel,
        job_service_pb2_grpc.JobServiceStub(channel),
        worker_service_pb2_grpc.WorkerServiceStub(channel),
    )


async def stop_broker(running: Running) -> None:
    await running.channel.close()
    await running.broker.stop(0.5)


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[Running]:
    """A broker of its own for each test (cheap: about 10 ms to start)."""
    running = await start_broker(redis_url)
    yield running
    await stop_broker(running)
