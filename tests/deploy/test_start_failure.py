"""A broker whose start fails half-way (a busy port, a Redis it must refuse) releases everything
it had opened before raising: its Redis connections, its tasks, its ports; and the embedded
Redis, when there is one. Its state says so, and a later ``stop()`` does nothing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from jobbroker_broker.__main__ import running_broker
from jobbroker_broker.server.app import Broker, State
from jobbroker_broker.settings import ConfigError, Settings

from .brokers import free_port

SETTINGS = Settings(port=0, maintenance_interval=0.05, health_interval=0.2, shutdown_grace=1.0)
DEADLINE_S = 10.0


@contextlib.contextmanager
def busy_port() -> Iterator[int]:
    """A port of 127.0.0.1 that something listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def answers_ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


async def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def clients_of(server: Any) -> Callable[[], int]:
    """How many clients the server has, not counting the one asking."""
    probe = redis.Redis.from_url(server.url)  # the private_redis fixture's server

    def count() -> int:
        return int(probe.info("clients")["connected_clients"]) - 1

    return count


async def assert_released(broker: Broker, server: Any, tasks_before: set[object]) -> None:
    assert broker.state is State.STOPPED
    assert broker.server is None
    count = clients_of(server)
    await eventually(lambda: count() == 0, "the broker's Redis connections were left open")
    await eventually(
        lambda: not (asyncio.all_tasks() - tasks_before - {asyncio.current_task()}),
        f"tasks left running: {asyncio.all_tasks() - tasks_before}",
    )
    await broker.stop()  # nothing to stop: returns at once
    assert broker.state is State.STOPPED


async def test_a_busy_metrics_port_fails_the_start_and_leaks_nothing(
    private_redis: Any,
) -> None:
    tasks_before = asyncio.all_tasks()
    grpc_port = free_port()
    with busy_port() as metrics_port:
        broker = Broker(
            replace(
                SETTINGS, redis_url=private_redis.url, port=grpc_port, metrics_port=metrics_port
            )
        )
        with pytest.raises(ConfigError, match="--metrics-port"):
            await broker.start()
    await assert_released(broker, private_redis, tasks_before)
    assert port_is_free(grpc_port), "the gRPC port is not held by a server that never started"


async def test_a_busy_grpc_port_fails_the_start_and_leaks_nothing(
    private_redis: Any,
) -> None:
    tasks_before = asyncio.all_tasks()
    metrics_port = free_port()
    with busy_port() as grpc_port:
        broker = Broker(
            replace(
                SETTINGS, redis_url=private_redis.url, port=grpc_port, metrics_port=metrics_port
            )
        )
        with pytest.raises(RuntimeError, match="bind"):
            await broker.start()
    await assert_released(broker, private_redis, tasks_before)
    await eventually(lambda: port_is_free(metrics_port), "the metrics server still listens")


async def test_a_refused_redis_fails_the_start_and_leaks_nothing(
    private_redis: Any,
) -> None:
    redis.Redis.from_url(private_redis.url).config_set("maxmemory-policy", "allkeys-lru")
    tasks_before = asyncio.all_tasks()
    broker = Broker(replace(SETTINGS, redis_url=private_redis.url))
    with pytest.raises(ConfigError, match="maxmemory-policy"):
        await broker.start()
    await assert_released(broker, private_redis, tasks_before)


async def test_a_broker_starts_once(private_redis: Any) -> None:
    broker = Broker(replace(SETTINGS, redis_url=private_redis.url))
    assert broker.state is State.NEW
    await broker.start()
    try:
        assert broker.state is State.RUNNING
        with pytest.raises(RuntimeError, match="starts once"):
            await broker.start()
    finally:
        await broker.stop(0)
    assert broker.state is State.STOPPED
    count = clients_of(private_redis)
    await eventually(lambda: count() == 0, "the broker's Redis connections were left open")
    with pytest.raises(RuntimeError, match="starts once"):
        await broker.start()


async def test_a_failed_start_stops_the_embedded_redis(tmp_path: Path) -> None:
    redis_port = free_port()
    with busy_port() as metrics_port:
        settings = replace(
            SETTINGS,
            redis_url="",
            data_dir=str(tmp_path / "data"),
            embedded_redis_port=redis_port,
            metrics_port=metrics_port,
        )
        with pytest.raises(ConfigError, match="--metrics-port"):
            async with running_broker(settings):
                pytest.fail("the broker started on a busy metrics port")
    url = f"redis://127.0.0.1:{redis_port}/0"
    await eventually(lambda: not answers_ping(url), "the embedded Redis still runs")
