"""Cancel: at once for waiting and delayed jobs; through the worker's stream for active ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import Running
from helpers import (
    E,
    ProgressSubscriber,
    S,
    add_id,
    cancel,
    complete,
    event_types,
    expect_error,
    fail,
    lease,
    lease_one,
    private_broker,
    release_req,
    status,
    wait_state,
    worker_stream,
)
from jobbroker.v1 import job_service_pb2, worker_service_pb2


@pytest.fixture
async def quiet(private_redis: Any) -> AsyncIterator[Running]:
    """A broker on a Redis of its own, for the tests that bound a latency: in the shared Redis
    it would also maintain every queue other tests left behind (see test_options.quiet)."""
    async with private_broker(private_redis.url) as running:
        yield running


CANCEL_REQUESTED = worker_service_pb2.SIGNAL_TYPE_CANCEL_REQUESTED
LEASE_LOST = worker_service_pb2.SIGNAL_TYPE_LEASE_LOST


async def test_cancel_waiting_job_at_once(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue)
    assert await cancel(broker, queue, job_id) == S.JOB_STATE_CANCELLED
    job = await status(broker, queue, job_id)
    assert job.state == S.JOB_STATE_CANCELLED
    assert job.finished_at_ms >= job.created_at_ms > 0
    assert await lease(broker, queue) == []


async def test_cancel_delayed_job_at_once(broker: Running, queue: str) -> None:
    job_id = await add_id(broker, queue, delay_ms=60_000)
    assert await cancel(broker, queue, job_id) == S.JOB_STATE_CANCELLED
    job = await status(broker, queue, job_id)
    assert (job.state, job.run_at_ms) == (S.JOB_STATE_CANCELLED, 0)
    assert await broker.jobs.ListJobs(
        job_service_pb2.ListJobsRequest(queue=queue, state=S.JOB_STATE_DELAYED)
    ) == job_service_pb2.ListJobsResponse(total=0)


async def test_cancel_reason_is_kept_on_the_job(broker: Running, queue: str) -> None:
    waiting = await add_id(broker, queue)
    await cancel(broker, queue, waiting, reason="customer withdrew the request")
    assert (await status(broker, queue, waiting)).cancel_reason == "customer withdrew the request"

    active = await add_id(broker, queue)
    leased = await lease_one(broker, queue)
    await cancel(broker, queue, active, reason="superseded by a newer upload")
    job = await status(broker, queue, active)
    assert (job.cancel_requested, job.cancel_reason) == (True, "superseded by a newer upload")
    await complete(broker, leased)
    job = await status(broker, queue, active)
    assert (job.state, job.cancel_reason) == (S.JOB_STATE_CANCELLED, "superseded by a newer upload")


async def test_cancel_active_job_signals_its_worker_then_ends_cancelled_on_complete(
    quiet: Running, queue: str
) -> None:
    job_id = await add_id(quiet, queue)
    subscriber = ProgressSubscriber(quiet, queue, job_id)
    assert (await subscriber.next()) is not None
    async with worker_stream(quiet, "worker-c", [queue]) as stream:
        leased = await lease_one(quiet, queue, "worker-c")
        assert await cancel(quiet, queue, job_id) == S.JOB_STATE_ACTIVE

        signal = await stream.signal(within=1.0)
        assert signal.type == CANCEL_REQUESTED
        assert (signal.queue, signal.job_id, signal.fence) == (queue, job_id, leased.fence)

        job = await status(quiet, queue, job_id)
        assert (job.state, job.cancel_requested) == (S.JOB_STATE_ACTIVE, True)

        assert await complete(quiet, leased, {"partial": True}) == S.JOB_STATE_CANCELLED
    job = await status(quiet, queue, job_id)
    assert job.state == S.JOB_STATE_CANCELLED
    assert job.finished_at_ms > 0
    assert event_types(await subscriber.rest()) == [
        E.EVENT_TYPE_ACTIVE,
        E.EVENT_TYPE_CANCEL_REQUESTED,
        E.EVENT_TYPE_CANCELLED,
    ]


async def test_cancelled_active_job_ends_cancelled_when_its_worker_fails_it(
    broker: Running, queue: str
) -> None:
    job_id = await add_id(broker, queue, attempts=3)
    leased = await lease_one(broker, queue)
    assert await cancel(broker, queue, job_id) == S.JOB_STATE_ACTIVE
    reply = await fail(broker, leased, "stopped")
    assert reply.state == S.JOB_STATE_CANCELLED
    assert (await status(broker, queue, job_id)).state == S.JOB_STATE_CANCELLED
    assert await lease(broker, queue) == []


async def test_cancelled_active_job_ends_cancelled_when_its_worker_releases_it(
    broker: Running, queue: str
) -> None:
    job_id = await add_id(broker, queue)
    leased = await lease_one(broker, queue)
    await cancel(broker, queue, job_id)
    reply = await broker.workers.Release(release_req(leased))
    assert reply.state == S.JOB_STATE_CANCELLED
    assert await lease(broker, queue) == []


async def test_cancelled_active_job_ends_cancelled_when_its_lease_runs_out(
    quiet: Running, queue: str
) -> None:
    job_id = await add_id(quiet, queue)
    async with worker_stream(quiet, "worker-gone", [queue]) as stream:
        leased = await lease_one(quiet, queue, "worker-gone", lease_ms=1_000)
        await cancel(quiet, queue, job_id)
        assert (await stream.signal()).type == CANCEL_REQUESTED
        job = await wait_state(quiet, queue, job_id, S.JOB_STATE_CANCELLED, within=3.0)
        assert job.stalled_count == 0
        signal = await stream.signal()
        assert (signal.type, signal.reason, signal.fence) == (LEASE_LOST, "CANCELLED", leased.fence)
    assert await lease(quiet, queue) == []


async def test_cancel_on_one_replica_reaches_a_worker_on_another(
    quiet: Running, private_redis: Any, queue: str
) -> None:
    job_id = await add_id(quiet, queue)
    async with (
        private_broker(private_redis.url) as other,
        worker_stream(quiet, "worker-x", [queue]) as stream,
    ):
        leased = await lease_one(quiet, queue, "worker-x")
        assert await cancel(other, queue, job_id) == S.JOB_STATE_ACTIVE
        signal = await stream.signal(within=1.0)
        assert (signal.type, signal.job_id) == (CANCEL_REQUESTED, job_id)
        assert await complete(other, leased) == S.JOB_STATE_CANCELLED


async def test_cancel_signal_reaches_only_the_worker_holding_the_job(
    broker: Running, queue: str
) -> None:
    job_id = await add_id(broker, queue)
    async with (
        worker_stream(broker, "holder", [queue]) as holder,
        worker_stream(broker, "bystander", [queue]) as bystander,
    ):
        await lease_one(broker, queue, "holder")
        await cancel(broker, queue, job_id)
        assert (await holder.signal()).job_id == job_id
        await bystander.no_signal(0.3)


async def test_second_cancel_of_an_active_job_sends_no_second_signal(
    broker: Running, queue: str
) -> None:
    job_id = await add_id(broker, queue)
    async with worker_stream(broker, "worker-1", [queue]) as stream:
        await lease_one(broker, queue)
        assert await cancel(broker, queue, job_id) == S.JOB_STATE_ACTIVE
        assert await cancel(broker, queue, job_id) == S.JOB_STATE_ACTIVE
        assert (await stream.signal()).type == CANCEL_REQUESTED
        await stream.no_signal(0.3)


async def test_cancel_of_a_finished_job_is_refused(broker: Running, queue: str) -> None:
    completed = await add_id(broker, queue)
    await complete(broker, await lease_one(broker, queue))
    failed = await add_id(broker, queue)
    await fail(broker, await lease_one(broker, queue))
    cancelled = await add_id(broker, queue)
    await cancel(broker, queue, cancelled)

    for job_id, state in [
        (completed, S.JOB_STATE_COMPLETED),
        (failed, S.JOB_STATE_FAILED),
        (cancelled, S.JOB_STATE_CANCELLED),
    ]:
        await expect_error(
            cancel(broker, queue, job_id), grpc.StatusCode.FAILED_PRECONDITION, "JOB_FINISHED"
        )
        assert (await status(broker, queue, job_id)).state == state


async def test_cancel_of_an_unknown_job_is_not_found(broker: Running, queue: str) -> None:
    await expect_error(
        cancel(broker, queue, "no-such-job"), grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND"
    )
