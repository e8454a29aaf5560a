"""A real broker with its Prometheus endpoint on, the stubs to drive it, and a scraper.

The start/stop logic is the integration tests' own, copied rather than imported: a module named
``conftest`` must not be imported by name (two of them would shadow each other).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import grpc
from jobbroker.v1 import job_service_pb2_grpc, worker_service_pb2_grpc
from jobbroker_broker.server.app import Broker
from jobbroker_broker.settings import Settings
from ports import free_port
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")

TEST_SETTINGS = Settings(
    port=0,
    maintenance_interval=0.05,
    health_interval=0.2,
    shutdown_grace=1.0,
    metrics_interval=0.05,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Running:
    broker: Broker
    address: str
    channel: grpc.aio.Channel
    jobs: job_service_pb2_grpc.JobServiceStub
    workers: worker_service_pb2_grpc.WorkerServiceStub

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.broker.metrics_endpoint.port}/metrics"

    async def scrape(self) -> Samples:
        """Every sample the endpoint serves now, by name and labels."""

        def get() -> str:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as reply:
                body: bytes = reply.read()
                return body.decode()

        text = await asyncio.to_thread(get)
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the endpoint does not serve it (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    """The label sets of every sample called ``name``."""
    return [dict(labels) for sample_name, labels in samples if sample_name == name]


async def start_broker(redis_url: str, **overrides: Any) -> Running:
    overrides.setdefault("metrics_port", free_port())
    settings = replace(TEST_SETTINGS, redis_url=redis_url, **overrides)
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


async def eventually(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool], within: float = 10.0
) -> T:
    """Call ``read`` until ``done`` accepts what it returns; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        got = await read()
        if done(got):
            return got
        assert time.monotonic() < deadline, f"still {got!r} after {within} s"
        await asyncio.sleep(0.05)
