"""Handlers that hang: the worker-wide ``default_attempt_timeout`` for jobs without a timeout of
their own, and the slots of handler threads that ignore being stopped (kept, and counted)."""

from __future__ import annotations

import asyncio
import threading
import urllib.request

import pytest
from jobbroker import JobContext, Worker
from jobbroker.worker import serve_metrics

from .worker_harness import Running, S, decoded, make_worker, serving, until


async def test_default_attempt_timeout_fails_a_hung_attempt_and_the_retry_runs(
    broker: Running, queue: str
) -> None:
    worker = make_worker(broker, queue, default_attempt_timeout=0.5, lease=1.0)
    stopped: list[str] = []
    deadlines: list[object] = []

    @worker.handler("hangs-once")
    async def hangs_once(ctx: JobContext) -> str:
        deadlines.append(ctx.timeout_at)
        if ctx.attempt == 1:
            try:
                await asyncio.Event().wait()  # hangs: nothing ever sets it
            except asyncio.CancelledError:
                stopped.append(ctx.stop_detail)
                raise
        return "second attempt"

    async with serving(worker):
        job_id = await broker.add(queue, name="hangs-once", attempts=2)
        # Without the worker's timeout the lease would be renewed forever (lease 1 s).
        job = await broker.wait_state(queue, job_id, S.JOB_STATE_COMPLETED, within=10)
    assert decoded(job.result) == "second attempt"
    assert job.attempts_made == 2
    assert stopped == ["TIMEOUT"]
    assert all(deadline is not None for deadline in deadlines)


async def test_the_failure_names_the_workers_timeout(broker: Running, queue: str) -> None:
    worker = make_worker(broker, queue, default_attempt_timeout=0.3)

    @worker.handler("hangs")
    async def hangs(ctx: JobContext) -> None:
        await asyncio.Event().wait()

    async with serving(worker):
        job_id = await broker.add(queue, name="hangs")
        job = await broker.wait_state(queue, job_id, S.JOB_STATE_FAILED, within=10)
    assert job.failure.error_type == "TimeoutError"
    assert "default_attempt_timeout (0.3 s)" in job.failure.message


async def test_a_jobs_own_timeout_wins_over_the_workers_default(
    broker: Running, queue: str
) -> None:
    worker = make_worker(broker, queue, default_attempt_timeout=0.2)

    @worker.handler("slowish")
    async def slowish(ctx: JobContext) -> str:
        await asyncio.sleep(0.8)  # past the worker's default, within the job's own timeout
        return "done"

    async with serving(worker):
        job_id = await broker.add(queue, name="slowish", timeout_ms=5_000)
        job = await broker.wait_state(queue, job_id, S.JOB_STATE_COMPLETED, within=10)
    assert (decoded(job.result), job.attempts_made) == ("done", 1)


def test_the_default_attempt_timeout_is_checked() -> None:
    with pytest.raises(ValueError, match="default_attempt_timeout"):
        Worker("q", default_attempt_timeout=0)
    assert Worker("q", default_attempt_timeout=2.5).default_attempt_timeout == 2.5
    assert Worker("q").default_attempt_timeout is None


async def test_a_thread_ignoring_its_timeout_keeps_its_slot_and_is_counted(
    broker: Running, queue: str
) -> None:
    """The attempt fails at once; the thread cannot be stopped, so its slot stays taken (no
    second job runs beside it with concurrency 1) and the metrics show it, until it returns."""
    worker = make_worker(broker, queue, concurrency=1, default_attempt_timeout=0.3)
    release = threading.Event()
    ran: list[str] = []

    @worker.handler("deaf")
    def deaf(ctx: JobContext) -> str:
        ran.append(ctx.id)
        release.wait(30)  # ignores ctx.cancelled
        return "ignored"

    @worker.handler("quick")
    def quick(ctx: JobContext) -> str:
        ran.append(ctx.id)
        return "quick"

    server = serve_metrics(worker.stats, 0)
    metrics_url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        async with serving(worker):
            stuck = await broker.add(queue, name="deaf")
            failed = await broker.wait_state(queue, stuck, S.JOB_STATE_FAILED, within=10)
            assert failed.failure.error_type == "TimeoutError"
            await until(lambda: worker.stats().abandoned == 1)
            stats = worker.stats()
            assert (stats.busy, stats.abandoned, stats.leases) == (0, 1, 0)
            text = await asyncio.to_thread(_scrape, metrics_url)
            assert 'jobbroker_worker_handlers{state="abandoned"} 1.0' in text
            assert 'jobbroker_worker_handlers{state="busy"} 0.0' in text

            waiting = await broker.add(queue, name="quick")
            await asyncio.sleep(0.5)  # a free slot would lease it within milliseconds
            assert (await broker.status(queue, waiting)).state == S.JOB_STATE_WAITING
            assert ran == [stuck]

            release.set()
            done = await broker.wait_state(queue, waiting, S.JOB_STATE_COMPLETED, within=10)
            assert decoded(done.result) == "quick"
            await until(lambda: worker.stats().abandoned == 0)
            text = await asyncio.to_thread(_scrape, metrics_url)
            assert 'jobbroker_worker_handlers{state="abandoned"} 0.0' in text
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    # The late result of the timed-out attempt is dropped.
    assert (await broker.status(queue, stuck)).state == S.JOB_STATE_FAILED


async def test_a_thread_ignoring_the_brokers_timeout_is_counted_too(
    broker: Running, queue: str
) -> None:
    worker = make_worker(broker, queue, concurrency=2)
    release = threading.Event()

    @worker.handler("deaf")
    def deaf(ctx: JobContext) -> None:
        release.wait(30)

    try:
        async with serving(worker):
            job_id = await broker.add(queue, name="deaf", timeout_ms=300)
            job = await broker.wait_state(queue, job_id, S.JOB_STATE_FAILED, within=10)
            assert job.failure.reason == S.FAILURE_REASON_TIMEOUT
            await until(lambda: worker.stats().abandoned == 1)
            assert worker.active == 0  # the lease is gone; the slot waits for the thread
            release.set()
            await until(lambda: worker.stats().abandoned == 0)
    finally:
        release.set()


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())
