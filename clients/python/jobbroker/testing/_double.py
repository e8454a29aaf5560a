"""A :class:`~jobbroker.JobContext` for unit tests of a handler, with no broker.

The handler gets a real ``JobContext`` (so it sees exactly the API, the checks and the limits
a worker gives it), whose reports are recorded here instead of sent on a stream, and it runs
through the worker's own handler runner, so its outcome (completed, failed, retried or not,
cancelled, given back) is decided as a worker decides it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..models import Progress, decode, encode
from ..v1 import job_pb2
from ..v1 import worker_service_pb2 as ws
from ..worker._context import JobContext
from ..worker._lease import Lease, StopReason
from ..worker._runner import Handler, is_async, run_handler

TEST_WORKER_ID = "test-worker"
"""The ``worker_id`` a handler sees."""


@dataclass(frozen=True)
class Outcome:
    """How the attempt ended, as the worker would report it to the broker."""

    state: str
    """``completed``; ``failed`` (the attempt failed: the job retries while ``retry`` and
    attempts are left); ``cancelled`` (the handler stopped on a cancel); ``released`` (given
    back without spending an attempt: stopped by a shutdown); ``lost`` (stopped because the
    lease ran out, as after a timeout: nothing is reported)."""
    result: Any = None
    """What the handler returned (decoded as the broker stores it: JSON, or Raw)."""
    error_type: str = ""
    """A failure's exception class name (``CancelledError`` for a cancel)."""
    message: str = ""
    """A failure's message."""
    stack: str = ""
    """A failure's stack, as the worker reports it."""
    retry: bool = False
    """A failure the broker would retry while attempts are left (False after DoNotRetry)."""


class _Recorder:
    """The stream's side of a JobContext: keeps what the handler reported."""

    def __init__(
        self, progress: list[Progress], logs: list[str], reported: Callable[[], None]
    ) -> None:
        self.progress_seen = progress
        self.logs_seen = logs
        self.reported = reported

    def progress(self, lease: Lease, percent: float | None, value: job_pb2.Payload | None) -> None:
        self.progress_seen.append(
            Progress(percent=percent, value=None if value is None else decode(value))
        )
        self.reported()

    def log(self, lease: Lease, line: str) -> None:
        self.logs_seen.append(line)
        self.reported()

    async def flush(self, lease: Lease) -> None:
        return None


class TestJob:
    """One job for a handler's unit test::

        from jobbroker.testing import TestJob

        def test_send():
            job = TestJob("send", {"to": "ada@example.com"})
            outcome = job.run(send)
            assert outcome.state == "completed" and outcome.result == {"sent": True}
            assert job.logs == ["sending to ada@example.com"]

    ``progress`` and ``logs`` record what the handler reported, in order. ``cancel()`` and
    ``time_out()`` stop the handler as a worker would (before the run, or during it, for
    example from ``on_report``, which is called after every progress or log report).
    """

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(
        self,
        name: str = "job",
        data: Any = None,
        *,
        queue: str = "test",
        job_id: str = "1",
        attempt: int = 1,
        max_attempts: int = 1,
        previous_progress: Progress | None = None,
        on_report: Callable[[TestJob], None] | None = None,
    ) -> None:
        leased = ws.LeasedJob(
            queue=queue,
            job_id=job_id,
            name=name,
            attempt=attempt,
            max_attempts=max_attempts,
            token="test-token",
            fence=1,
        )
        if data is not None:
            leased.data.CopyFrom(encode(data))
        if previous_progress is not None:
            if previous_progress.percent is not None:
                leased.progress.percent = previous_progress.percent
            if previous_progress.value is not None:
                leased.progress.value.CopyFrom(encode(previous_progress.value))
        self._leased = leased
        self.on_report = on_report
        self.progress: list[Progress] = []
        """Every progress report, in order."""
        self.logs: list[str] = []
        """Every log line, in order (as the broker keeps them: lines over 16 KiB cut)."""
        self._stops: list[tuple[StopReason, str]] = []
        self._lease: Lease | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def cancel(self, detail: str = "") -> None:
        """Cancel the job (as ``client.cancel``): the handler's ``ctx.cancelled`` is set and an
        async handler is cancelled."""
        self._stop("cancel", detail)

    def time_out(self) -> None:
        """End the attempt as its timeout does: the worker loses the lease (``stop_detail``
        ``TIMEOUT``) and reports nothing; the broker fails or retries the attempt."""
        self._stop("lost", "TIMEOUT")

    def shut_down(self) -> None:
        """Stop the handler as a worker's shutdown does: the job goes back to waiting."""
        self._stop("shutdown", "")

    def run(self, handler: Handler) -> Outcome:
        """Run ``handler`` on this job (sync or async) and return its outcome."""
        return asyncio.run(self.run_async(handler))

    async def run_async(self, handler: Handler) -> Outcome:
        """:meth:`run` from a test that has an event loop already."""
        threaded = not is_async(handler)
        lease = Lease(self._leased, threaded=threaded, renew_at=0.0)
        loop = asyncio.get_running_loop()
        self._lease, self._loop, self._loop_thread = lease, loop, threading.get_ident()
        recorder = _Recorder(self.progress, self.logs, self._reported)
        ctx = JobContext(lease, recorder, TEST_WORKER_ID, loop, self._loop_thread)
        for reason, detail in self._stops:
            lease.stop(reason, detail)
        lease.task = asyncio.ensure_future(run_handler(lease, ctx, handler, None))
        try:
            report = await lease.task
        finally:
            lease.handler_done = True
        return _outcome(lease, report)

    def _stop(self, reason: StopReason, detail: str) -> None:
        lease, loop = self._lease, self._loop
        if lease is None or loop is None:
            self._stops.append((reason, detail))
        elif threading.get_ident() == self._loop_thread:
            lease.stop(reason, detail)
        else:
            loop.call_soon_threadsafe(lease.stop, reason, detail)

    def _reported(self) -> None:
        if self.on_report is not None:
            self.on_report(self)


def _outcome(lease: Lease, report: Any) -> Outcome:
    if report is None:
        return Outcome(state="lost")
    outcome = ws.Outcome()
    report.write(outcome)
    kind = outcome.WhichOneof("kind")
    if kind == "complete":
        result = decode(outcome.complete.result) if outcome.complete.HasField("result") else None
        return Outcome(state="completed", result=result)
    if kind == "fail":
        fail = outcome.fail
        cancelled = lease.stop_reason == "cancel"
        return Outcome(
            state="cancelled" if cancelled else "failed",
            error_type=fail.error_type,
            message=fail.message,
            stack=fail.stack,
            retry=not fail.no_retry,
        )
    return Outcome(state="released")
