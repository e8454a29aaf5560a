"""Stopping handlers: cancellation, attempt timeouts (lease lost), and lease renewal."""

from __future__ import annotations

import asyncio
import threading

from jobbroker import JobContext

from .worker_harness import Running, S, decoded, make_worker, serving, until


async def test_cancel_cancels_a_running_async_handler(broker: Running, queue: str) -> None:
    worker = make_worker(broker, queue)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @worker.handler("long")
    async def long(ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with serving(worker):
        job_id = await broker.add(queue, name="long", attempts=3)
        await asyncio.wait_for(started.wait(), 5)
        await broker.cancel(queue, job_id)
        await asyncio.wait_for(cancelled.wait(), 2)
        job = await broker.wait_state(queue, job_id, S.JOB_STATE_CANCELLED)
        await until(lambda: worker.active == 0)
    assert job.attempts_made <= 1


async def test_a_handler_that_finishes_after_cancel_keeps_its_result(
    broker: Running, queue: str
) -> None:
    worker = make_worker(broker, queue)
    started = asyncio.Event()

    @worker.handler("stubborn")
    async def stubborn(ctx: JobContext) -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "partial"
        return "full"

    async with serving(worker):
        job_id = await broker.add(queue, name="stubborn")
        await asyncio.wait_for(started.wait(), 5)
        await broker.cancel(queue, job_id)
        job = await broker.wait_state(queue, job_id, S.JOB_STATE_CANCELLED)
    assert decoded(job.result) == "partial"


async def test_cancel_sets_the_flag_of_a_sync_handler(broker: Running, queue: str) -> None:
    worker = make_worker(broker, queue)
    started = threading.Event()
    saw_flag: list[bool] = []

    @worker.handler("loop")
    def loop(ctx: JobContext) -> None:
        started.set()
        saw_flag.append(ctx.cancelled.wait(10))
        ctx.raise_if_cancelled()

    async with serving(worker):
        job_id = await broker.add(queue, name="loop")
        await asyncio.to_thread(started.wait, 5)
        await broker.cancel(queue, job_id)
        job = await broker.wait_state(queue, job_id, S.JOB_STATE_CANCELLED)
        await until(lambda: worker.active == 0)
    assert saw_flag == [True]
    assert job.cancel_requested
    assert not job.HasField("result")


async def test_attempt_timeout_stops_the_handler(broker: Running, queue: str) -> None:
    worker = make_worker(broker, queue)
    stopped: list[str] = []
    sync_flags: list[bool] = []

    @worker.handler("async")
    async def slow(ctx: JobContext) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.append(ctx.stop_detail)
            raise

    @worker.handler("sync")
    def slow_sync(ctx: JobContext) -> str:
        sync_flags.append(ctx.cancelled.wait(10))
        return "too late"

    async with serving(worker):
        a = await broker.add(queue, name="async", timeout_ms=300, attempts=2)
        b = await broker.add(queue, name="sync", timeout_ms=300)
        job = await broker.wait_state(queue, a, S.JOB_STATE_FAILED, within=5)
        sync_job = await broker.wait_state(queue, b, S.JOB_STATE_FAILED, within=5)
        await until(lambda: worker.active == 0)
    assert stopped == ["TIMEOUT", "TIMEOUT"]  # both attempts
    assert (job.attempts_made, job.failure.reason) == (2, S.FAILURE_REASON_TIMEOUT)
    assert sync_flags == [True]
    assert sync_job.failure.reason == S.FAILURE_REASON_TIMEOUT
    assert not sync_job.HasField("result")


async def test_leases_are_renewed_while_a_job_runs(broker: Running, queue: str) -> None:
    worker = make_worker(broker, queue, lease=1.0)
    expiries: list[object] = []

    @worker.handler("long")
    async def long(ctx: JobContext) -> str:
        for _ in range(6):
            expiries.append(ctx.lease_expires_at)
            await asyncio.sleep(0.5)
        return "done"

    async with serving(worker):
        job_id = await broker.add(queue, name="long")
        job = await broker.wait_state(queue, job_id, S.JOB_STATE_COMPLETED, within=8)
    assert decoded(job.result) == "done"
    assert (job.stalled_count, job.attempts_made) == (0, 1)
    assert len(set(expiries)) >= 4  # the context follows the renewed expiry
