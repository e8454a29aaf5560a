"""Graceful shutdown: stop leasing, let running jobs finish within the grace period, give the
others back without spending an attempt; ``run()`` does it on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path

from jobbroker import JobContext
from jobbroker.worker.collector import THRESHOLDS

from .worker_harness import Running, S, decoded, make_worker, until

HERE = Path(__file__).parent


async def test_a_job_that_finishes_within_grace_completes(broker: Running, queue: str) -> None:
    worker = make_worker(broker, queue)
    started = asyncio.Event()

    @worker.handler("work")
    async def work(ctx: JobContext) -> str:
        started.set()
        await asyncio.sleep(0.5)
        return "finished"

    await worker.start()
    job_id = await broker.add(queue, name="work")
    await asyncio.wait_for(started.wait(), 5)
    stopping = asyncio.create_task(worker.stop(grace=5))
    await asyncio.sleep(0.1)
    later = await broker.add(queue, name="work")  # leasing stopped: stays waiting
    await asyncio.wait_for(stopping, 5)
    job = await broker.status(queue, job_id)
    assert (job.state, decoded(job.result)) == (S.JOB_STATE_COMPLETED, "finished")
    assert (await broker.status(queue, later)).state == S.JOB_STATE_WAITING


async def test_jobs_past_grace_go_back_to_waiting_without_spending_an_attempt(
    broker: Running, queue: str
) -> None:
    worker = make_worker(broker, queue, concurrency=3)
    started = 0
    cancelled: list[str] = []
    flagged = threading.Event()

    @worker.handler("async")
    async def slow(ctx: JobContext) -> None:
        nonlocal started
        started += 1
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(ctx.stop_detail)
            raise

    @worker.handler("polite")
    def polite(ctx: JobContext) -> None:
        nonlocal started
        started += 1
        if ctx.cancelled.wait(30):
            flagged.set()
        ctx.raise_if_cancelled()

    deaf_done = threading.Event()

    @worker.handler("deaf")
    def deaf(ctx: JobContext) -> str:
        nonlocal started
        started += 1
        time.sleep(2.5)  # ignores the flag
        deaf_done.set()
        return "ignored"

    await worker.start()
    ids = [await broker.add(queue, name=name, attempts=3) for name in ("async", "polite", "deaf")]
    await until(lambda: started == 3)
    await asyncio.wait_for(worker.stop(grace=0.2), 5)
    assert not deaf_done.is_set()  # stop() did not wait for it: grace + 1 s to unwind, at most
    assert cancelled == ["worker shutting down"]
    assert flagged.is_set()
    for job_id in ids:
        job = await broker.status(queue, job_id)
        assert (job.state, job.attempts_made, job.stalled_count) == (S.JOB_STATE_WAITING, 0, 0)
    await asyncio.to_thread(deaf_done.wait, 5)  # its result is not reported
    await asyncio.sleep(0.1)
    job = await broker.status(queue, ids[2])
    assert (job.state, job.result.body) == (S.JOB_STATE_WAITING, b"")


async def _start_process(broker: Running, queue: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "signal_worker.py"),
        broker.address,
        queue,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def _line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    return (await asyncio.wait_for(process.stdout.readline(), 15)).decode().strip()


async def test_sigterm_lets_the_running_job_finish(broker: Running, queue: str) -> None:
    job_id = await broker.add(queue, {"seconds": 0.5}, name="sleep")
    process = await _start_process(broker, queue)
    try:
        assert await _line(process) == f"started {job_id}"
        process.send_signal(signal.SIGTERM)
        assert await _line(process) == "exited"
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    job = await broker.status(queue, job_id)
    assert (job.state, decoded(job.result)) == (S.JOB_STATE_COMPLETED, "finished")


async def test_a_second_signal_gives_running_jobs_back_at_once(broker: Running, queue: str) -> None:
    job_id = await broker.add(queue, {"seconds": 30}, name="sleep", attempts=2)
    process = await _start_process(broker, queue)
    try:
        assert await _line(process) == f"started {job_id}"
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        assert process.returncode is None  # within its 10 s grace
        process.send_signal(signal.SIGINT)
        assert await _line(process) == "exited"
        assert await asyncio.wait_for(process.wait(), 5) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    job = await broker.status(queue, job_id)
    assert (job.state, job.attempts_made) == (S.JOB_STATE_WAITING, 0)


async def test_run_tunes_the_garbage_collector_while_serving(broker: Running, queue: str) -> None:
    job_id = await broker.add(queue, name="gc")
    process = await _start_process(broker, queue)
    try:
        done = await broker.wait_state(queue, job_id, S.JOB_STATE_COMPLETED)
        process.send_signal(signal.SIGTERM)
        assert await _line(process) == "exited"
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert decoded(done.result) == {"thresholds": list(THRESHOLDS), "frozen": True}
