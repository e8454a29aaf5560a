"""The order jobs are served in: priority bands, FIFO within a band, LIFO on request."""

from __future__ import annotations

import random

from conftest import Running
from helpers import S, add_id, decoded, lease, lease_one, payload, promote, release_req
from jobbroker.v1 import job_pb2, job_service_pb2


def _serving_key(priority: int, index: int) -> tuple[int, int]:
    """Unprioritized (0) first, then 1 (highest) ... 1,000,000; insertion order within."""
    return (priority if priority else -1, index)


async def test_many_jobs_are_served_by_priority_then_fifo(broker: Running, queue: str) -> None:
    rng = random.Random(7)
    priorities = [rng.choice([0, 1, 2, 3, 50, 1_000_000]) for _ in range(120)]
    # Added in several calls (bulk and single) so ordering does not depend on one script call.
    for start in range(0, 100, 25):
        await broker.jobs.AddBulk(
            job_service_pb2.AddBulkRequest(
                queue=queue,
                jobs=[
                    job_service_pb2.BulkJob(
                        name="j",
                        data=payload({"i": i}),
                        options=job_pb2.JobOptions(priority=priorities[i]),
                    )
                    for i in range(start, start + 25)
                ],
            )
        )
    for i in range(100, 120):
        await add_id(broker, queue, {"i": i}, priority=priorities[i])

    expected = sorted(range(120), key=lambda i: _serving_key(priorities[i], i))
    listed = await broker.jobs.ListJobs(
        job_service_pb2.ListJobsRequest(queue=queue, state=S.JOB_STATE_WAITING, page_size=1000)
    )
    assert [decoded(j.data)["i"] for j in listed.jobs] == expected

    served = []
    while jobs := await lease(broker, queue, max_jobs=7):
        served.extend(decoded(j.data)["i"] for j in jobs)
    assert served == expected


async def test_jobs_one_at_a_time_follow_priority(broker: Running, queue: str) -> None:
    order = [(3, "c1"), (1, "a1"), (0, "n1"), (3, "c2"), (1, "a2"), (0, "n2")]
    for priority, label in order:
        await add_id(broker, queue, {"l": label}, priority=priority)
    served = [decoded((await lease_one(broker, queue)).data)["l"] for _ in order]
    assert served == ["n1", "n2", "a1", "a2", "c1", "c2"]


async def test_lifo_jobs_go_before_jobs_of_their_priority_newest_first(
    broker: Running, queue: str
) -> None:
    for label, lifo in [("a", False), ("b", False), ("c", True), ("d", True), ("e", False)]:
        await add_id(broker, queue, {"l": label}, lifo=lifo)
    jobs = await lease(broker, queue, max_jobs=10)
    assert [decoded(j.data)["l"] for j in jobs] == ["d", "c", "a", "b", "e"]


async def test_lifo_stays_within_its_priority_band(broker: Running, queue: str) -> None:
    await add_id(broker, queue, {"l": "p1-fifo"}, priority=1)
    await add_id(broker, queue, {"l": "p2-lifo"}, priority=2, lifo=True)
    await add_id(broker, queue, {"l": "p1-lifo"}, priority=1, lifo=True)
    await add_id(broker, queue, {"l": "none-fifo"})
    jobs = await lease(broker, queue, max_jobs=10)
    assert [decoded(j.data)["l"] for j in jobs] == ["none-fifo", "p1-lifo", "p1-fifo", "p2-lifo"]


async def test_promoted_job_joins_the_back_of_its_priority(broker: Running, queue: str) -> None:
    delayed = await add_id(broker, queue, {"l": "delayed"}, delay_ms=60_000)
    await add_id(broker, queue, {"l": "first"})
    await add_id(broker, queue, {"l": "second"})
    assert await promote(broker, queue, delayed) == S.JOB_STATE_WAITING
    jobs = await lease(broker, queue, max_jobs=10)
    assert [decoded(j.data)["l"] for j in jobs] == ["first", "second", "delayed"]


async def test_released_job_goes_back_to_the_front(broker: Running, queue: str) -> None:
    for label in ["a", "b", "c"]:
        await add_id(broker, queue, {"l": label})
    a = await lease_one(broker, queue)
    await broker.workers.Release(release_req(a))
    jobs = await lease(broker, queue, max_jobs=10)
    assert [decoded(j.data)["l"] for j in jobs] == ["a", "b", "c"]


async def test_fifo_order_survives_the_queue_running_empty(broker: Running, queue: str) -> None:
    await add_id(broker, queue, {"l": "x"})
    assert len(await lease(broker, queue)) == 1
    for label in ["y", "z"]:
        await add_id(broker, queue, {"l": label})
    await add_id(broker, queue, {"l": "w"}, priority=1)
    jobs = await lease(broker, queue, max_jobs=10)
    assert [decoded(j.data)["l"] for j in jobs] == ["y", "z", "w"]
