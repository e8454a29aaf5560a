"""ListWorkers: workers seen through their Lease calls and ReportProgress streams, with host,
queues and active jobs, most recent first, dropped once they go quiet."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import redis
from conftest import Running
from helpers import (
    add_id,
    complete,
    error_info,
    eventually,
    expect_error,
    lease,
    lease_one,
    private_broker,
    redis_now_ms,
    worker_stream,
)
from jobbroker.v1 import queue_service_pb2, queue_service_pb2_grpc
from jobbroker_broker.loops import registry

Q = queue_service_pb2


async def workers(running: Running, queue: str) -> list[Q.WorkerInfo]:
    stub = queue_service_pb2_grpc.QueueServiceStub(running.channel)
    return list((await stub.ListWorkers(Q.ListWorkersRequest(queue=queue))).workers)


async def test_a_leasing_worker_is_listed_with_host_queues_and_active_jobs(
    broker: Running, queue: str, r: redis.Redis
) -> None:
    for _ in range(2):
        await add_id(broker, queue)
    before = redis_now_ms(r)
    await lease(broker, queue, "host-a:123:abc", max_jobs=2)
    await asyncio.sleep(0.01)
    await lease(broker, queue, "plain-worker")  # nothing left to lease: seen all the same
    listed = await workers(broker, queue)
    assert [w.worker_id for w in listed] == ["plain-worker", "host-a:123:abc"]
    plain, sdk = listed
    assert (sdk.host, list(sdk.queues), sdk.active_jobs) == ("host-a", [queue], 2)
    assert (plain.host, list(plain.queues), plain.active_jobs) == ("", [queue], 0)
    assert before <= sdk.last_seen_ms <= plain.last_seen_ms <= redis_now_ms(r)


async def test_active_jobs_follow_the_workers_leases(broker: Running, queue: str) -> None:
    await add_id(broker, queue)
    leased = await lease_one(broker, queue, "w:1:a")
    assert [w.active_jobs for w in await workers(broker, queue)] == [1]
    await complete(broker, leased)
    assert [w.active_jobs for w in await workers(broker, queue)] == [0]


async def test_a_streaming_worker_is_listed_in_each_of_its_queues(
    broker: Running, queue: str
) -> None:
    other = f"{queue}-b"
    async with worker_stream(broker, "host-s:9:ff", [other, queue]):
        for name in (queue, other):
            [info] = await workers(broker, name)
            assert (info.worker_id, info.host) == ("host-s:9:ff", "host-s")
            assert list(info.queues) == sorted([queue, other])


async def test_sightings_are_written_at_most_once_a_second(broker: Running, queue: str) -> None:
    await lease(broker, queue, "w:1:t")
    [first] = await workers(broker, queue)
    await asyncio.sleep(0.05)
    await lease(broker, queue, "w:1:t")
    [second] = await workers(broker, queue)
    assert second.last_seen_ms == first.last_seen_ms


async def test_a_quiet_worker_is_dropped_and_pruned(
    broker: Running, queue: str, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "WINDOW_MS", 2_000)
    monkeypatch.setattr(registry, "THROTTLE_S", 0.0)
    await lease(broker, queue, "w:1:quiet")
    await lease(broker, queue, "w:1:busy")
    assert {w.worker_id for w in await workers(broker, queue)} == {"w:1:quiet", "w:1:busy"}
    # The quiet worker falls out of a 1.5 s window; the busy one, seen again just now, stays
    # in it even on a loaded machine (a 0.3 s window lost both there).
    monkeypatch.setattr(registry, "WINDOW_MS", 1_500)
    await asyncio.sleep(1.6)
    await lease(broker, queue, "w:1:busy")
    listed = await eventually(
        lambda: workers(broker, queue), lambda ws: [w.worker_id for w in ws] == ["w:1:busy"]
    )
    assert len(listed) == 1
    key = f"jb:{{{queue}}}:workers"
    assert r.hkeys(key) == [b"w:1:busy"], "the quiet worker's entry is pruned"
    await eventually(lambda: workers(broker, queue), lambda ws: ws == [])


async def test_a_worker_seen_by_one_broker_is_listed_by_another(
    broker: Running, redis_url: str, queue: str
) -> None:
    await lease(broker, queue, "host-x:1:aa")
    async with private_broker(redis_url) as other:
        assert [w.worker_id for w in await workers(other, queue)] == ["host-x:1:aa"]


@pytest.mark.parametrize("name", ["", "bad queue!", "{x}"])
async def test_bad_queue_is_invalid_argument(broker: Running, name: str) -> None:
    error = await expect_error(
        workers(broker, name), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"
    )
    assert error_info(error).metadata["field"] == "queue"
