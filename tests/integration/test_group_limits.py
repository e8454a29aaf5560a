"""Group rate limits: one busy group cannot starve the others, and nothing is failed or lost."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import Running
from helpers import S, add_id, complete, lease, private_broker, status
from jobbroker.v1 import job_service_pb2, queue_service_pb2, queue_service_pb2_grpc

Q = queue_service_pb2
WINDOW_MS = 600


def queues(running: Running) -> queue_service_pb2_grpc.QueueServiceStub:
    return queue_service_pb2_grpc.QueueServiceStub(running.channel)


async def limit_groups(running: Running, queue: str, per_window: int) -> None:
    settings = Q.QueueSettings(group_rate_limit=Q.RateLimit(max=per_window, duration_ms=WINDOW_MS))
    await queues(running).UpdateQueueSettings(
        Q.UpdateQueueSettingsRequest(queue=queue, settings=settings)
    )


async def counts(running: Running, queue: str) -> Q.JobCounts:
    return (await queues(running).GetQueue(Q.GetQueueRequest(queue=queue))).queue.counts


async def test_a_busy_group_does_not_starve_the_others(broker: Running, queue: str) -> None:
    await limit_groups(broker, queue, 2)
    noisy = [await add_id(broker, queue, {"i": i}, group="noisy") for i in range(8)]
    quiet = [await add_id(broker, queue, {"i": i}, group="quiet") for i in range(2)]
    plain = await add_id(broker, queue)

    first = await lease(broker, queue, max_jobs=20)

    # Two of the busy group, and everyone behind it: the quiet group and a job with no group.
    assert [j.job_id for j in first] == [*noisy[:2], *quiet, plain]
    parked = await counts(broker, queue)
    assert parked.waiting == 6  # parked jobs are still waiting
    assert parked.failed == 0
    for job in first:
        await complete(broker, job)


async def test_parked_jobs_come_back_one_window_at_a_time(broker: Running, queue: str) -> None:
    await limit_groups(broker, queue, 2)
    ids = [await add_id(broker, queue, {"i": i}, group="g") for i in range(6)]
    loop = asyncio.get_running_loop()
    starts: list[tuple[float, str]] = []
    deadline = loop.time() + 10
    while len(starts) < len(ids) and loop.time() < deadline:
        for job in await lease(broker, queue, max_jobs=10, wait_ms=1_000):
            starts.append((loop.time(), job.job_id))
            assert job.attempt == 1  # a parked job spends no attempt
            await complete(broker, job)
    assert sorted(j for _, j in starts) == sorted(ids)
    # FIFO within the group survives parking.
    assert [j for _, j in starts] == ids
    # Never more than 2 starts within one window (a little slack for timer granularity).
    times = [t for t, _ in starts]
    for i in range(len(times) - 2):
        assert times[i + 2] - times[i] >= WINDOW_MS / 1000 * 0.8


async def test_the_limit_holds_across_two_brokers(
    broker: Running, queue: str, redis_url: str
) -> None:
    await limit_groups(broker, queue, 1)
    for i in range(4):
        await add_id(broker, queue, {"i": i}, group="g")
    async with private_broker(redis_url) as other:
        a = await lease(broker, queue, "a", max_jobs=4)
        b = await lease(other, queue, "b", max_jobs=4)
    assert len(a) + len(b) == 1


async def test_a_parked_job_can_be_cancelled_and_removed(broker: Running, queue: str) -> None:
    await limit_groups(broker, queue, 1)
    first = await add_id(broker, queue, group="g")
    second = await add_id(broker, queue, group="g")
    third = await add_id(broker, queue, group="g")
    leased = await lease(broker, queue, max_jobs=3)
    assert [j.job_id for j in leased] == [first]

    reply = await broker.jobs.Cancel(job_service_pb2.CancelRequest(queue=queue, job_id=second))
    assert reply.state == S.JOB_STATE_CANCELLED
    await broker.jobs.Remove(job_service_pb2.RemoveRequest(queue=queue, job_id=third))
    assert (await counts(broker, queue)).waiting == 0
    assert (await status(broker, queue, second)).state == S.JOB_STATE_CANCELLED


async def test_drain_removes_parked_jobs(broker: Running, queue: str) -> None:
    await limit_groups(broker, queue, 1)
    for _ in range(5):
        await add_id(broker, queue, group="g")
    await lease(broker, queue, max_jobs=5)
    assert (await counts(broker, queue)).waiting == 4
    reply = await queues(broker).DrainQueue(Q.DrainQueueRequest(queue=queue))
    assert reply.removed == 4
    assert (await counts(broker, queue)).waiting == 0


async def test_the_group_is_part_of_the_jobs_options(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue, group="tenant-42")
    assert (await status(broker, queue, job_id)).options.group == "tenant-42"


async def test_removing_the_limit_brings_parked_jobs_back(broker: Running, queue: str) -> None:
    await limit_groups(broker, queue, 1)
    for _ in range(3):
        await add_id(broker, queue, group="g")
    await lease(broker, queue, max_jobs=3)
    await queues(broker).UpdateQueueSettings(
        Q.UpdateQueueSettingsRequest(queue=queue, settings=Q.QueueSettings())
    )
    got: list[Any] = []
    loop = asyncio.get_running_loop()
    # They come back at the group's window end, with a maintenance pass: generous for a loaded
    # machine whose shared Redis holds hundreds of queues for the loop to visit.
    deadline = loop.time() + 30
    while len(got) < 2 and loop.time() < deadline:
        got += await lease(broker, queue, max_jobs=5, wait_ms=1_000)
    assert len(got) == 2
