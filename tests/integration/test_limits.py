"""Queue limits enforced at lease time across workers and broker replicas: the rate limit and
global concurrency."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from conftest import Running
from helpers import (
    S,
    add_id,
    complete,
    lease,
    private_broker,
    status,
)
from jobbroker.v1 import queue_service_pb2, queue_service_pb2_grpc

Q = queue_service_pb2


def queues(running: Running) -> queue_service_pb2_grpc.QueueServiceStub:
    return queue_service_pb2_grpc.QueueServiceStub(running.channel)


async def set_settings(running: Running, queue: str, **fields: Any) -> None:
    await queues(running).UpdateQueueSettings(
        Q.UpdateQueueSettingsRequest(queue=queue, settings=Q.QueueSettings(**fields))
    )


async def counts(running: Running, queue: str) -> Q.JobCounts:
    return (await queues(running).GetQueue(Q.GetQueueRequest(queue=queue))).queue.counts


# --- rate limit ----------------------------------------------------------------------------------


async def test_rate_limit_holds_within_one_window_with_several_workers_on_two_brokers(
    broker: Running, queue: str, redis_url: str
) -> None:
    rate, window_ms, total = 3, 500, 12
    await set_settings(broker, queue, rate_limit=Q.RateLimit(max=rate, duration_ms=window_ms))
    ids = [await add_id(broker, queue, {"i": i}) for i in range(total)]
    done: list[str] = []

    async def worker(running: Running, name: str) -> None:
        while len(done) < total:
            for job in await lease(running, queue, name, max_jobs=2, wait_ms=500):
                await complete(running, job)
                done.append(job.job_id)

    async with private_broker(redis_url) as other:
        await asyncio.wait_for(
            asyncio.gather(*(worker(b, f"w{i}") for i, b in enumerate([broker, other] * 2))),
            20.0,
        )
    assert sorted(done) == sorted(ids)
    jobs = [await status(broker, queue, job_id) for job_id in ids]
    assert {(j.state, j.attempts_made) for j in jobs} == {(S.JOB_STATE_COMPLETED, 1)}
    # Starts, on Redis' clock. Each window opens at a start and lasts window_ms; a start at
    # least window_ms (less a little rounding) after the window's opening opens the next one.
    starts = sorted(j.started_at_ms for j in jobs)
    opened, in_window, windows = starts[0], 0, []
    for start in starts:
        if start >= opened + window_ms - 2:
            windows.append(in_window)
            opened, in_window = start, 0
        in_window += 1
    windows.append(in_window)
    assert max(windows) <= rate, (windows, starts)
    assert len(windows) >= total // rate
    assert starts[-1] - starts[0] >= (total // rate - 1) * window_ms - 10


async def test_rate_limited_jobs_wait_without_spending_an_attempt(
    broker: Running, queue: str
) -> None:
    await set_settings(broker, queue, rate_limit=Q.RateLimit(max=2, duration_ms=60_000))
    ids = [await add_id(broker, queue, attempts=1) for _ in range(5)]
    first = await lease(broker, queue, max_jobs=5)
    assert [j.job_id for j in first] == ids[:2]
    assert await lease(broker, queue, max_jobs=5) == []
    assert await lease(broker, queue, "worker-2", max_jobs=5, wait_ms=300) == []
    c = await counts(broker, queue)
    assert (c.waiting, c.active, c.failed) == (3, 2, 0)
    for job_id in ids[2:]:
        job = await status(broker, queue, job_id)
        assert (job.state, job.attempts_made) == (S.JOB_STATE_WAITING, 0)
    # A higher limit lets the waiting jobs start, each on its first (and only) attempt.
    await set_settings(broker, queue, rate_limit=Q.RateLimit(max=10, duration_ms=60_000))
    rest = await lease(broker, queue, max_jobs=5)
    assert [(j.job_id, j.attempt) for j in rest] == [(i, 1) for i in ids[2:]]


async def test_long_polling_lease_returns_when_the_rate_window_ends(
    broker: Running, queue: str, redis_url: str
) -> None:
    await set_settings(broker, queue, rate_limit=Q.RateLimit(max=1, duration_ms=500))
    ids = [await add_id(broker, queue) for _ in range(2)]
    async with private_broker(redis_url) as other:
        started = time.monotonic()
        [first] = await lease(broker, queue, max_jobs=2)
        jobs = await lease(other, queue, "worker-2", max_jobs=2, wait_ms=10_000)
        waited = time.monotonic() - started
    assert [first.job_id] + [j.job_id for j in jobs] == ids
    # Not before the window ends; well before the 10 s wait (generous for a loaded machine).
    assert 0.45 <= waited < 5.0


# --- concurrency ---------------------------------------------------------------------------------


async def test_global_concurrency_holds_across_workers_and_two_brokers(
    broker: Running, queue: str, redis_url: str
) -> None:
    limit, total = 3, 15
    await set_settings(broker, queue, concurrency=limit)
    ids = [await add_id(broker, queue) for _ in range(total)]
    done: list[str] = []
    running = 0
    most = 0
    observed: list[int] = []

    async def worker(b: Running, name: str) -> None:
        nonlocal running, most
        while len(done) < total:
            jobs = await lease(b, queue, name, max_jobs=2, wait_ms=300)
            running += len(jobs)
            most = max(most, running)
            for job in jobs:
                await asyncio.sleep(0.05)
                # Still active in Redis until Complete returns: count it out first, so the
                # local count never exceeds what the broker holds.
                running -= 1
                await complete(b, job)
                done.append(job.job_id)

    async def watch(b: Running) -> None:
        while len(done) < total:
            observed.append((await counts(b, queue)).active)
            await asyncio.sleep(0.01)

    async with private_broker(redis_url) as other:
        brokers = [broker, other] * 3
        await asyncio.wait_for(
            asyncio.gather(watch(other), *(worker(b, f"w{i}") for i, b in enumerate(brokers))),
            20.0,
        )
    assert sorted(done) == sorted(ids)
    assert most <= limit
    assert max(observed) <= limit
    assert most == limit  # six workers do fill it


async def test_lease_takes_only_the_room_left_and_long_poll_waits_for_a_slot(
    broker: Running, queue: str, redis_url: str
) -> None:
    await set_settings(broker, queue, concurrency=2)
    ids = [await add_id(broker, queue) for _ in range(4)]
    held = await lease(broker, queue, max_jobs=10)
    assert [j.job_id for j in held] == ids[:2]
    assert await lease(broker, queue, max_jobs=10) == []
    async with private_broker(redis_url) as other:
        waiting = asyncio.create_task(lease(other, queue, "worker-2", max_jobs=10, wait_ms=20_000))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        freed = time.monotonic()
        await complete(broker, held[0])
        jobs = await asyncio.wait_for(waiting, 5.0)
        assert time.monotonic() - freed < 2.0
    assert [j.job_id for j in jobs] == [ids[2]]
    c = await counts(broker, queue)
    assert (c.active, c.waiting, c.completed) == (2, 1, 1)
