"""jobbroker.testing.TestJob: a handler's unit test with no broker. The handler gets a real
JobContext, its reports are recorded, and its outcome is the one a worker would report."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from jobbroker import DoNotRetry, JobContext, Raw
from jobbroker.models import Progress
from jobbroker.testing import TEST_WORKER_ID, TestJob


def send(ctx: JobContext) -> dict[str, object]:
    ctx.log(f"sending to {ctx.data['to']}")
    ctx.progress(50, {"stage": "rendered"})
    ctx.progress(100)
    return {"sent": True, "attempt": ctx.attempt}


def test_a_sync_handler_completes_and_its_reports_are_recorded() -> None:
    job = TestJob("send", {"to": "ada@example.com"}, queue="emails", attempt=2, max_attempts=3)
    outcome = job.run(send)
    assert outcome.state == "completed"
    assert outcome.result == {"sent": True, "attempt": 2}
    assert job.logs == ["sending to ada@example.com"]
    assert job.progress == [Progress(50, {"stage": "rendered"}), Progress(100, None)]


async def test_an_async_handler_runs_in_the_test_loop() -> None:
    async def handler(ctx: JobContext) -> str:
        assert (ctx.queue, ctx.name, ctx.worker_id) == ("q", "n", TEST_WORKER_ID)
        await asyncio.sleep(0)
        ctx.log("done")
        return "ok"

    job = TestJob("n", queue="q")
    outcome = await job.run_async(handler)
    assert (outcome.state, outcome.result, job.logs) == ("completed", "ok", ["done"])


def test_failures_say_whether_the_broker_would_retry() -> None:
    class InvalidAddress(DoNotRetry):
        pass

    def flaky(ctx: JobContext) -> None:
        raise ConnectionError("smtp down")

    def invalid(ctx: JobContext) -> None:
        raise InvalidAddress("no @ in 'ada'")

    failed = TestJob().run(flaky)
    assert (failed.state, failed.error_type, failed.message, failed.retry) == (
        "failed",
        "ConnectionError",
        "smtp down",
        True,
    )
    assert "flaky" in failed.stack
    final = TestJob().run(invalid)
    assert (final.state, final.error_type, final.retry) == ("failed", "InvalidAddress", False)


def test_a_result_that_is_not_json_fails_as_the_worker_reports_it() -> None:
    outcome = TestJob().run(lambda ctx: object())
    assert (outcome.state, outcome.error_type) == ("failed", "TypeError")
    raw = TestJob().run(lambda ctx: Raw(b"\x00", "application/octet-stream"))
    assert raw.result == Raw(b"\x00", "application/octet-stream")


def test_a_cancel_during_the_run_stops_a_sync_handler() -> None:
    seen = threading.Event()

    def long_job(ctx: JobContext) -> None:
        for step in range(1000):
            ctx.progress(step / 10)
            if ctx.cancelled.wait(0.01):
                seen.set()
                ctx.raise_if_cancelled()

    def cancel_at_half(job: TestJob) -> None:
        if job.progress[-1].percent == 50:
            job.cancel("by the test")

    job = TestJob(on_report=cancel_at_half)
    outcome = job.run(long_job)
    assert seen.is_set()
    assert (outcome.state, outcome.error_type, outcome.retry) == (
        "cancelled",
        "CancelledError",
        False,
    )
    assert "by the test" in outcome.message


def test_an_async_handler_is_cancelled_where_it_waits() -> None:
    async def waits(ctx: JobContext) -> None:
        ctx.log("waiting")
        await asyncio.sleep(60)

    job = TestJob(on_report=lambda job: job.cancel())
    started = time.monotonic()
    assert job.run(waits).state == "cancelled"
    assert time.monotonic() - started < 30


def test_a_timeout_loses_the_lease_and_a_shutdown_gives_the_job_back() -> None:
    def stops(ctx: JobContext) -> str:
        ctx.raise_if_cancelled()
        return "ran"

    timed_out = TestJob()
    timed_out.time_out()
    assert timed_out.run(stops).state == "lost"
    shut_down = TestJob()
    shut_down.shut_down()
    assert shut_down.run(stops).state == "released"


def test_the_context_keeps_the_workers_checks_and_limits() -> None:
    def handler(ctx: JobContext) -> Progress:
        ctx.log("x" * 20_000)
        with pytest.raises(ValueError, match="between 0 and 100"):
            ctx.progress(150)
        return ctx.previous_progress.percent  # type: ignore[return-value]

    job = TestJob(previous_progress=Progress(40, None))
    assert job.run(handler).result == 40
    assert len(job.logs[0].encode()) <= 16_384
