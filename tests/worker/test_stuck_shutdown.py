"""SIGTERM ends a worker process after its grace period whatever its handlers do: a handler
thread that ignores the stop is left behind (its job given back), and an event loop blocked by
an async handler is cut short by a watchdog. Both say so in the log."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from .worker_harness import Running, S

HERE = Path(__file__).parent
GRACE = 1.0
"""The grace period of stuck_worker.py."""


async def _start(broker: Running, queue: str, mode: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "stuck_worker.py"),
        broker.address,
        queue,
        mode,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def _stop_and_wait(process: asyncio.subprocess.Process, within: float) -> tuple[float, str]:
    """SIGTERM; the seconds it took to exit and its standard error."""
    assert process.stderr is not None
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        stderr = await asyncio.wait_for(process.stderr.read(), within)
        await asyncio.wait_for(process.wait(), 5)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return time.monotonic() - started, stderr.decode()


async def _started(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    return (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()


async def test_a_thread_ignoring_sigterm_does_not_keep_the_process_alive(
    broker: Running, queue: str
) -> None:
    job_id = await broker.add(queue, name="thread", attempts=2)
    process = await _start(broker, queue, "thread")
    try:
        assert await _started(process) == f"started {job_id}"
    except BaseException:
        process.kill()
        await process.wait()
        raise
    took, stderr = await _stop_and_wait(process, 30)
    assert process.returncode == 0, stderr
    # grace, then one second to unwind; the rest is margin for a loaded machine
    assert took < GRACE + 1.0 + 8.0, (took, stderr)
    assert "ignoring the stop" in stderr
    assert f"{queue}/{job_id}" in stderr
    assert process.stdout is not None
    assert (await process.stdout.read()).decode().strip() == "exited"
    job = await broker.status(queue, job_id)
    assert (job.state, job.attempts_made) == (S.JOB_STATE_WAITING, 0)  # given back


@pytest.mark.parametrize("mode", ["loop", "swallow"])
async def test_an_async_handler_that_does_not_stop_is_cut_short_by_the_watchdog(
    broker: Running, queue: str, mode: str
) -> None:
    job_id = await broker.add(queue, name=mode)
    process = await _start(broker, queue, mode)
    try:
        assert await _started(process) == f"started {job_id}"
    except BaseException:
        process.kill()
        await process.wait()
        raise
    # grace + 1 s to unwind + 5 s to flush + the watchdog's 5 s margin, and slack
    took, stderr = await _stop_and_wait(process, 40)
    assert process.returncode == 70, stderr
    assert took < GRACE + 1.0 + 5.0 + 5.0 + 10.0, took
    assert "exiting now" in stderr
    assert f"{queue}/{job_id}" in stderr
    job = await broker.wait_state(queue, job_id, S.JOB_STATE_WAITING, within=15)
    if mode == "loop":
        # Nothing could be reported: the job came back when its lease (2 s) ran out.
        assert job.stalled_count == 1
    else:
        # The loop still ran: the job was given back at the end of the grace period.
        assert (job.stalled_count, job.attempts_made) == (0, 0)
