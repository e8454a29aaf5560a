"""Handlers run jobs: results, concurrency, progress and logs, failures and retries."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from jobbroker import DoNotRetry, InvalidArgument, JobContext, Raw
from jobbroker.v1 import events_pb2

from .worker_harness import Running, S, decoded, make_worker, serving, until


async def test_async_and_sync_handlers_complete_jobs_with_results(
    broker: Running, queue: str
) -> None:
    worker = make_worker(broker, queue)
    threads: dict[str, str] = {}

    @worker.handler("double")
    async def double(ctx: JobContext) -> Any:
        threads["async"] = threading.current_thread().name
        return {"doubled": ctx.data["n"] * 2, "attempt": ctx.attempt, "of": ctx.max_attempts}

    @worker.handler("shout")
    def shout(ctx: JobContext) -> Any:
        threads["sync"] = threading.current_thread().name
        return ctx.data["text"].upper()

    @worker.handler("raw")
    async def raw(ctx: JobContext) -> Raw:
        return Raw(b"\x00\x01", "application/octet-stream")

    @worker.handler("nothing")
    def nothing(ctx: JobContext) -> None:
        return None

    async with serving(worker):
        a = await broker.add(queue, {"n": 21}, name="double", attempts=3)
        b = await broker.add(queue, {"text": "hi"}, name="shout")
        c = await broker.add(queue, name="raw")
        d = await broker.add(queue, name="nothing")
        first = await broker.wait_state(queue, a, S.JOB_STATE_COMPLETED)
        second = await broker.wait_state(queue, b, S.JOB_STATE_COMPLETED)
        third = await broker.wait_state(queue, c, S.JOB_STATE_COMPLETED)
        fourth = await broker.wait_state(queue, d, S.JOB_STATE_COMPLETED)
    assert decoded(first.result) == {"doubled": 42, "attempt": 1, "of": 3}
    assert decoded(second.result) == "HI"
    assert (third.result.body, third.result.content_type) == (
        b"\x00\x01",
        "application/octet-stream",
    )
    assert fourth.result.body == b""
    assert first.worker_id == worker.worker_id
    assert threads["async"] == "MainThread"
    assert threads["sync"].startswith("jobbroker-worker")


async def test_concurrency_limit_holds(broker: Running, queue: str) -> None:
    worker = make_worker(broker, queue, concurrency=3)
    running = peak = 0
    sync_running = sync_peak = 0
    lock = threading.Lock()

    @worker.handler("slow")
    async def slow(ctx: JobContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.15)
        running -= 1

    @worker.handler("slow-sync")
    def slow_sync(ctx: JobContext) -> None:
        nonlocal sync_running, sync_peak
        with lock:
            sync_running += 1
            sync_peak = max(sync_peak, sync_running)
        time.sleep(0.15)
        with lock:
            sync_running -= 1

    ids = [await broker.add(queue, {"i": i}, name="slow") for i in range(10)]
    ids += [await broker.add(queue, {"i": i}, name="slow-sync") for i in range(10)]
    async with serving(worker):
        for job_id in ids:
            await broker.wait_state(queue, job_id, S.JOB_STATE_COMPLETED, within=10)
    assert peak == 3
    assert sync_peak == 3
    assert worker.active == 0


async def test_progress_and_logs_reach_status_logs_and_progress_stream(
    broker: Running, queue: str
) -> None:
    worker = make_worker(broker, queue)
    reported = asyncio.Event()
    finish = asyncio.Event()

    @worker.handler("tokens")
    async def tokens(ctx: JobContext) -> str:
        ctx.log("starting")
        ctx.progress(10)
        ctx.progress(40, {"text": "Hel"})  # collapses with the one above when sent together
        ctx.log("half way")
        await ctx.flush()
        reported.set()
        await finish.wait()
        ctx.progress(100, {"text": "Hello"})
        ctx.log("done")
        return "Hello"

    @worker.handler("threaded")
    def threaded(ctx: JobContext) -> str:
        for i in range(1, 6):
            ctx.progress(i * 20)
            ctx.log(f"step {i}")
        return "ok"

    async with serving(worker):
        job_id = await broker.add(queue, name="tokens")
        await asyncio.wait_for(reported.wait(), 5)
        stream = await broker.subscribe(queue, job_id)
        job = await broker.status(queue, job_id)
        assert (job.state, job.progress.percent, decoded(job.progress.value)) == (
            S.JOB_STATE_ACTIVE,
            40,
            {"text": "Hel"},
        )
        assert await broker.logs(queue, job_id) == ["starting", "half way"]
        finish.set()
        items = await stream.rest()
        sync_id = await broker.add(queue, name="threaded")
        sync_job = await broker.wait_state(queue, sync_id, S.JOB_STATE_COMPLETED)

    progress = [
        (item.event.progress.percent, decoded(item.event.progress.value))
        for item in items
        if item.HasField("event") and item.event.type == events_pb2.EVENT_TYPE_PROGRESS
    ]
    assert items[0].snapshot.progress.percent == 40
    assert progress == [(100, {"text": "Hello"})]
    assert items[-1].event.type == events_pb2.EVENT_TYPE_COMPLETED
    assert await broker.logs(queue, job_id) == ["starting", "half way", "done"]
    assert sync_job.progress.percent == 100
    assert await broker.logs(queue, sync_id) == [f"step {i}" for i in range(1, 6)]


async def test_handler_exception_fails_the_attempt_and_is_retried(
    broker: Running, queue: str
) -> None:
    worker = make_worker(broker, queue)
    attempts: list[int] = []

    resumed_from: list[float | None] = []

    @worker.handler("flaky")
    async def flaky(ctx: JobContext) -> str:
        attempts.append(ctx.attempt)
        resumed_from.append(ctx.previous_progress.percent)
        if ctx.attempt < 2:
            ctx.progress(30)
            raise ValueError(f"no luck on attempt {ctx.attempt}")
        return "second time lucky"

    @worker.handler("broken")
    def broken(ctx: JobContext) -> None:
        raise KeyError("missing")

    async with serving(worker):
        flaky_id = await broker.add(queue, name="flaky", attempts=3)
        broken_id = await broker.add(queue, name="broken", attempts=2)
        done = await broker.wait_state(queue, flaky_id, S.JOB_STATE_COMPLETED)
        failed = await broker.wait_state(queue, broken_id, S.JOB_STATE_FAILED)
    assert attempts == [1, 2]
    assert resumed_from == [None, 30]
    assert decoded(done.result) == "second time lucky"
    assert done.failure.error_type == "ValueError"
    assert done.failure.message == "no luck on attempt 1"
    assert "in flaky" in done.failure.stack
    assert done.failure.stack.rstrip().endswith("ValueError: no luck on attempt 1")
    assert (failed.attempts_made, failed.failure.reason) == (2, S.FAILURE_REASON_ERROR)
    assert (failed.failure.error_type, failed.failure.message) == ("KeyError", "'missing'")
    assert 'raise KeyError("missing")' in failed.failure.stack
    assert "concurrent/futures" not in failed.failure.stack


async def test_do_not_retry_fails_for_good(broker: Running, queue: str) -> None:
    worker = make_worker(broker, queue)
    calls = 0

    class InvalidAddress(DoNotRetry):
        pass

    @worker.handler("send")
    async def send(ctx: JobContext) -> None:
        nonlocal calls
        calls += 1
        raise InvalidAddress("no such mailbox")

    async with serving(worker):
        job_id = await broker.add(queue, name="send", attempts=5)
        job = await broker.wait_state(queue, job_id, S.JOB_STATE_FAILED)
    assert calls == 1
    assert job.attempts_made == 1
    assert (job.failure.error_type, job.failure.message) == ("InvalidAddress", "no such mailbox")


async def test_unknown_names_fail_for_good_unless_a_default_handler_exists(
    broker: Running, queue: str, redis_url: str
) -> None:
    worker = make_worker(broker, queue)

    @worker.handler("known")
    def known(ctx: JobContext) -> None:
        return None

    async with serving(worker):
        job_id = await broker.add(queue, name="mystery", attempts=3)
        job = await broker.wait_state(queue, job_id, S.JOB_STATE_FAILED)
    assert job.attempts_made == 1
    assert job.failure.error_type == "UnknownJobName"
    assert "'mystery'" in job.failure.message
    assert "'known'" in job.failure.message

    fallback = make_worker(broker, queue)

    @fallback.handler()
    async def anything(ctx: JobContext) -> str:
        return f"handled {ctx.name}"

    async with serving(fallback):
        other = await broker.add(queue, name="whatever")
        done = await broker.wait_state(queue, other, S.JOB_STATE_COMPLETED)
    assert decoded(done.result) == "handled whatever"


async def test_a_result_that_is_not_json_fails_the_attempt(broker: Running, queue: str) -> None:
    worker = make_worker(broker, queue)

    @worker.handler("odd")
    async def odd(ctx: JobContext) -> object:
        return object()

    async with serving(worker):
        job_id = await broker.add(queue, name="odd")
        job = await broker.wait_state(queue, job_id, S.JOB_STATE_FAILED)
    assert job.failure.error_type == "TypeError"
    assert "JSON" in job.failure.message


async def test_one_worker_serves_several_queues(broker: Running, queue: str) -> None:
    other = f"{queue}-b"
    worker = make_worker(broker, [queue, other], concurrency=2)
    running = peak = 0

    @worker.handler()
    async def echo(ctx: JobContext) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.1)
        running -= 1
        return ctx.queue

    async with serving(worker):
        # Only the first queue has work: the idle one's long-poll must not hold any slot.
        busy = [await broker.add(queue, {"i": i}) for i in range(6)]
        for job_id in busy:
            await broker.wait_state(queue, job_id, S.JOB_STATE_COMPLETED)
        assert peak == 2
        ids = [(q, await broker.add(q, {"i": i})) for i in range(3) for q in (queue, other)]
        for q, job_id in ids:
            job = await broker.wait_state(q, job_id, S.JOB_STATE_COMPLETED)
            assert decoded(job.result) == q
        await until(lambda: worker.active == 0)
    assert peak == 2


async def test_a_worker_of_six_queues_leases_from_all_of_them_in_one_call(
    broker: Running, queue: str
) -> None:
    """Each request for jobs names every queue of the worker (one request per batch, not one
    per queue: six queues used to cost six calls per batch)."""
    names = [f"{queue}-{i}" for i in range(6)]
    added = [(name, await broker.add(name, {"i": i})) for name in names for i in range(5)]
    worker = make_worker(broker, names, concurrency=len(added), wait=30.0)

    @worker.handler()
    async def echo(ctx: JobContext) -> str:
        return ctx.queue

    async with serving(worker):
        for name, job_id in added:
            job = await broker.wait_state(name, job_id, S.JOB_STATE_COMPLETED)
            assert decoded(job.result) == name
        leasing = worker._leasing
        assert leasing is not None
        # The 30 waiting jobs fit one batch, asked for on the stream (naming every queue, as
        # a Lease call would); the next request waits there (30 s). No Lease call was needed.
        assert leasing.calls == 0
        assert leasing.leased == len(added)


async def test_serve_raises_when_the_broker_refuses_the_worker(broker: Running, queue: str) -> None:
    worker = make_worker(broker, queue, worker_id="no spaces {allowed}")

    @worker.handler()
    async def anything(ctx: JobContext) -> None:
        return None

    with pytest.raises(InvalidArgument) as caught:
        await asyncio.wait_for(worker.serve(), 10)
    assert caught.value.field == "worker_id"
