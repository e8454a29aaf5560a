"""Redis goes away and comes back: callers get UNAVAILABLE fast, health follows, work resumes.

Each test runs a broker on a Redis of its own (``private_redis``), which it stops and restarts.
Also: the broker refuses a Redis that may evict keys, unless told to accept it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
import redis
from conftest import Running, start_broker, stop_broker
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jobbroker.v1 import job_pb2, job_service_pb2, worker_service_pb2
from jobbroker_broker.server.app import ConfigError

FAST = 5.0
"""Seconds within which a call must be answered while Redis is down."""

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = ("", "jobbroker.v1.JobService", "jobbroker.v1.WorkerService")


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    pytest.fail(f"{err.code()} {err.details()!r} carries no ErrorInfo")


async def unavailable_fast(call: Awaitable[Any]) -> float:
    """Await a call that must fail UNAVAILABLE/REDIS_UNAVAILABLE within FAST; its duration."""
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    elapsed = time.monotonic() - started
    err = caught.value
    assert err.code() == grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())
    info = error_info(err)
    assert (info.reason, info.domain) == ("REDIS_UNAVAILABLE", "jobbroker.v1")
    assert elapsed < FAST
    return elapsed


async def health_of(running: Running, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(running.channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return int(reply.status)


async def wait_for_health(running: Running, status: int, within: float) -> None:
    deadline = time.monotonic() + within
    while (current := await health_of(running)) != status:
        assert time.monotonic() < deadline, f"health stayed {current}, expected {status}"
        await asyncio.sleep(0.05)
    for service in SERVICES:
        assert await health_of(running, service) == status


def add_request(queue: str) -> job_service_pb2.AddRequest:
    return job_service_pb2.AddRequest(
        queue=queue, name="job", data=job_pb2.Payload(body=b'{"n": 1}')
    )


@pytest.fixture
async def private_broker(private_redis: Any) -> AsyncIterator[Running]:
    running = await start_broker(private_redis.url, redis_timeout=1.0)
    try:
        yield running
    finally:
        private_redis.start()  # a clean stop needs Redis back
        await stop_broker(running)


async def test_add_is_unavailable_while_redis_is_down_then_works_again(
    private_broker: Running, private_redis: Any, queue: str
) -> None:
    jobs = private_broker.jobs
    assert (await jobs.Add(add_request(queue))).job_id
    assert await health_of(private_broker) == SERVING

    private_redis.stop()
    await unavailable_fast(jobs.Add(add_request(queue), timeout=30))
    await wait_for_health(private_broker, NOT_SERVING, within=3)
    # Still fast once the broker knows Redis is gone, and never a false acknowledgement.
    await unavailable_fast(jobs.Add(add_request(queue), timeout=30))
    await unavailable_fast(
        jobs.GetStatus(job_service_pb2.GetStatusRequest(queue=queue, job_id="1"), timeout=30)
    )

    private_redis.start()
    await wait_for_health(private_broker, SERVING, within=5)
    added = await jobs.Add(add_request(queue), timeout=5)
    status = await jobs.GetStatus(
        job_service_pb2.GetStatusRequest(queue=queue, job_id=added.job_id), timeout=5
    )
    assert status.job.state == job_pb2.JOB_STATE_WAITING
    leased = await private_broker.workers.Lease(
        worker_service_pb2.LeaseRequest(queue=queue, worker_id="w"), timeout=5
    )
    assert [j.job_id for j in leased.jobs] == [added.job_id]


async def settle(call: Awaitable[Any], within: float) -> tuple[Any, grpc.aio.AioRpcError | None]:
    """The reply or the error of a call that must end within `within` seconds."""
    try:
        return await asyncio.wait_for(call, within), None
    except grpc.aio.AioRpcError as err:
        return None, err


def assert_redis_unavailable(err: grpc.aio.AioRpcError) -> None:
    assert err.code() == grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())
    assert error_info(err).reason == "REDIS_UNAVAILABLE"


@pytest.mark.parametrize("back_after", [None, 0.3], ids=["stays-down", "comes-back"])
async def test_lease_long_poll_never_outlives_its_wait(
    private_broker: Running, private_redis: Any, queue: str, back_after: float | None
) -> None:
    wait_ms = 2_500
    request = worker_service_pb2.LeaseRequest(
        queue=queue, worker_id="w", wait_ms=wait_ms, lease_ms=5_000
    )
    started = time.monotonic()
    poll = asyncio.ensure_future(private_broker.workers.Lease(request, timeout=30))
    await asyncio.sleep(0.3)  # the poll is waiting for a job
    assert not poll.done()
    private_redis.stop()
    if back_after is not None:
        await asyncio.sleep(back_after)
        private_redis.start()
    reply, err = await settle(poll, wait_ms / 1000 + FAST)
    assert time.monotonic() - started < wait_ms / 1000 + FAST
    if err is not None:
        assert_redis_unavailable(err)
    else:
        assert back_after is not None, "a poll cannot succeed while Redis is down"
        assert not reply.jobs


async def test_lease_long_poll_recovers_and_delivers_a_job_added_after_restart(
    private_broker: Running, private_redis: Any, queue: str
) -> None:
    # Redis bounces during the long poll; the poll either says UNAVAILABLE or hands over the
    # job added once Redis is back.
    request = worker_service_pb2.LeaseRequest(
        queue=queue, worker_id="w", wait_ms=4_000, lease_ms=5_000
    )
    started = time.monotonic()
    poll = asyncio.ensure_future(private_broker.workers.Lease(request, timeout=30))
    await asyncio.sleep(0.2)
    private_redis.stop()
    private_redis.start()
    await wait_for_health(private_broker, SERVING, within=5)
    added = await private_broker.jobs.Add(add_request(queue), timeout=5)
    reply, err = await settle(poll, 4.0 + FAST)
    assert time.monotonic() - started < 4.0 + FAST
    if err is not None:
        assert_redis_unavailable(err)
    else:
        assert [j.job_id for j in reply.jobs] == [added.job_id]


async def test_stream_progress_is_unavailable_while_redis_is_down(
    private_broker: Running, private_redis: Any, queue: str
) -> None:
    private_redis.stop()
    request = job_service_pb2.StreamProgressRequest(queue=queue, job_id="1")

    async def read_all() -> list[Any]:
        return [m async for m in private_broker.jobs.StreamProgress(request, timeout=FAST + 1)]

    await unavailable_fast(read_all())


async def test_worker_stream_answers_while_redis_is_down(
    private_broker: Running, private_redis: Any, queue: str
) -> None:
    # The stream stays up: each item fails with UNAVAILABLE, and once Redis is back the same
    # stream works again.
    update = worker_service_pb2.LeaseUpdate(queue=queue, job_id="1", token="1-abc", percent=5)
    private_redis.stop()
    call = private_broker.workers.ReportProgress(timeout=30)
    try:
        started = time.monotonic()
        await call.write(
            worker_service_pb2.ReportProgressRequest(
                worker_id="w", seq=1, queues=[queue], updates=[update]
            )
        )
        reply = await asyncio.wait_for(call.read(), FAST)
        assert time.monotonic() - started < FAST
        assert reply.seq == 1
        [status] = reply.leases
        assert (status.error.code, status.error.reason) == (14, "REDIS_UNAVAILABLE")

        private_redis.start()
        await wait_for_health(private_broker, SERVING, within=5)
        await call.write(worker_service_pb2.ReportProgressRequest(seq=2, updates=[update]))
        reply = await asyncio.wait_for(call.read(), FAST)
        assert reply.seq == 2
        [status] = reply.leases
        assert (status.error.code, status.error.reason) == (5, "JOB_NOT_FOUND")
    finally:
        call.cancel()


# --- Redis that may evict keys --------------------------------------------------------------


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-random", "volatile-ttl"])
async def test_broker_refuses_an_evicting_redis(private_redis: Any, policy: str) -> None:
    client = redis.Redis.from_url(private_redis.url)
    try:
        client.config_set("maxmemory-policy", policy)
    finally:
        client.close()
    with pytest.raises(ConfigError) as caught:
        await start_broker(private_redis.url)
    message = str(caught.value)
    assert policy in message
    assert "allow-evicting-redis" in message


async def test_broker_accepts_an_evicting_redis_when_allowed(
    private_redis: Any, queue: str
) -> None:
    client = redis.Redis.from_url(private_redis.url)
    try:
        client.config_set("maxmemory-policy", "allkeys-lru")
    finally:
        client.close()
    running = await start_broker(private_redis.url, allow_evicting_redis=True)
    try:
        assert (await running.jobs.Add(add_request(queue), timeout=5)).job_id
    finally:
        await stop_broker(running)


async def test_broker_starts_on_noeviction(private_redis: Any, queue: str) -> None:
    client = redis.Redis.from_url(private_redis.url, decode_responses=True)
    try:
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    finally:
        client.close()
    running = await start_broker(private_redis.url)
    try:
        assert (await running.jobs.Add(add_request(queue), timeout=5)).job_id
    finally:
        await stop_broker(running)
