"""One Lease call over several queues (``more_queues``): strict priority order, a long poll that
wakes on any of them, and the names checked like ``queue``."""

from __future__ import annotations

import asyncio

import grpc
from conftest import Running
from helpers import add_id, error_info, expect_error
from jobbroker.v1 import worker_service_pb2

W = worker_service_pb2


def request(queue: str, *more: str, max_jobs: int, wait_ms: int = 0) -> W.LeaseRequest:
    return W.LeaseRequest(
        queue=queue,
        more_queues=list(more),
        worker_id="multi-1",
        max_jobs=max_jobs,
        wait_ms=wait_ms,
        lease_ms=30_000,
    )


async def test_one_call_leases_from_the_queues_in_priority_order(
    broker: Running, queue: str
) -> None:
    high, mid, low = f"{queue}-high", f"{queue}-mid", f"{queue}-low"
    for name, count in ((low, 3), (mid, 2), (high, 2)):
        for _ in range(count):
            await add_id(broker, name)

    reply = await broker.workers.Lease(request(high, mid, low, max_jobs=3))
    assert [job.queue for job in reply.jobs] == [high, high, mid]
    reply = await broker.workers.Lease(request(high, mid, low, max_jobs=10))
    assert [job.queue for job in reply.jobs] == [mid, low, low, low]


async def test_a_long_poll_wakes_on_any_of_its_queues(broker: Running, queue: str) -> None:
    first, second = f"{queue}-a", f"{queue}-b"
    call = asyncio.ensure_future(
        broker.workers.Lease(request(first, second, max_jobs=5, wait_ms=20_000))
    )
    await asyncio.sleep(0.2)  # the poll is waiting (if not, it finds the job at once: fine too)
    job_id = await add_id(broker, second)
    reply = await asyncio.wait_for(call, 10)
    assert [(job.queue, job.job_id) for job in reply.jobs] == [(second, job_id)]


async def test_a_bad_name_in_more_queues_is_invalid_argument_naming_the_field(
    broker: Running, queue: str
) -> None:
    error = await expect_error(
        broker.workers.Lease(request(queue, "bad name", max_jobs=1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
    )
    assert error_info(error).metadata["field"] == "more_queues"
