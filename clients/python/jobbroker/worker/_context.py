"""What a handler gets: the job, progress and log reporting, and the stop flag.

:class:`JobContext` is the handler's view of the worker's :class:`~jobbroker.worker._lease.Lease`
record: it reads from it what a handler may know and reports through :class:`Reports` (the
worker's stream), but offers no way to change the lease's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from ..models import Progress, decode, encode
from ..v1 import job_pb2
from ._lease import Lease

MAX_LOG_LINE_BYTES = 16_384
"""The broker's default ``--max-log-line-bytes``; longer lines are cut to fit."""


class DoNotRetry(Exception):
    """Raise from a handler to fail the job for good, whatever attempts are left.

    Subclass it for your own permanent errors: the failure's ``error_type`` is the name of the
    class raised (``class InvalidAddress(DoNotRetry)`` reports ``InvalidAddress``).
    """


class Reports(Protocol):
    """Where a handler's reports go: the worker's stream (on the loop's thread only)."""

    def progress(
        self, lease: Lease, percent: float | None, value: job_pb2.Payload | None
    ) -> None: ...

    def log(self, lease: Lease, line: str) -> None: ...

    async def flush(self, lease: Lease) -> None: ...


def _datetime(value_ms: int) -> datetime | None:
    return datetime.fromtimestamp(value_ms / 1000, UTC) if value_ms else None


def _fit(line: str) -> str:
    if len(line) * 4 <= MAX_LOG_LINE_BYTES:
        return line
    raw = line.encode()
    if len(raw) <= MAX_LOG_LINE_BYTES:
        return line
    return raw[: MAX_LOG_LINE_BYTES - 3].decode(errors="ignore") + "..."


class JobContext:
    """One leased job as a handler sees it.

    ``progress()`` and ``log()`` may be called from an async handler (they never block) and
    from a sync handler's thread alike. Reports are batched on the worker's stream; several
    progress calls between two sends collapse into the latest, log lines keep their order.
    """

    __slots__ = (
        "_lease",
        "_loop",
        "_loop_thread",
        "_reports",
        "attempt",
        "data",
        "id",
        "max_attempts",
        "name",
        "queue",
        "worker_id",
    )

    id: str
    """The job's id."""
    queue: str
    """The queue the job was leased from."""
    name: str
    """The job's name (the key its handler was registered under)."""
    data: Any
    """The job's input: decoded JSON, or :class:`~jobbroker.Raw` for other content types."""
    attempt: int
    """The attempt that runs now, 1-based."""
    max_attempts: int
    """Total attempts the job may make."""
    worker_id: str
    """The id of the worker running the job."""

    def __init__(
        self,
        lease: Lease,
        reports: Reports,
        worker_id: str,
        loop: asyncio.AbstractEventLoop,
        loop_thread: int,
    ) -> None:
        job = lease.job
        self.id = job.job_id
        self.queue = job.queue
        self.name = job.name
        self.data = decode(job.data)
        self.attempt = job.attempt
        self.max_attempts = job.max_attempts
        self.worker_id = worker_id
        self._lease = lease
        self._reports = reports
        self._loop = loop
        self._loop_thread = loop_thread

    def __repr__(self) -> str:
        return f"<JobContext {self.queue}/{self.id} {self.name!r} attempt {self.attempt}>"

    # --- what a handler reads ------------------------------------------------------------

    @property
    def cancelled(self) -> threading.Event:
        """Set when the job should stop: a Cancel arrived, the lease was lost (timeout), the
        worker's ``default_attempt_timeout`` passed, or the worker is shutting down and the
        grace period ran out. Sync handlers poll it; an
        async handler is cancelled as well (``asyncio.CancelledError``)."""
        return self._lease.cancelled

    @property
    def stop_detail(self) -> str:
        """Why the job was asked to stop (the broker's reason, for example ``TIMEOUT``); empty
        until then."""
        return self._lease.stop_detail

    @property
    def lease_expires_at(self) -> datetime | None:
        """When the lease runs out unless renewed (the worker renews it for you)."""
        return _datetime(self._lease.expires_ms)

    @property
    def timeout_at(self) -> datetime | None:
        """When the attempt times out: the job's ``timeout`` option, else the worker's
        ``default_attempt_timeout``; None without either."""
        return self._lease.timeout_at or _datetime(self._lease.job.timeout_at_ms)

    @property
    def previous_progress(self) -> Progress:
        """The progress a previous attempt left, to resume from."""
        return Progress.from_proto(self._lease.job.progress)

    def raise_if_cancelled(self) -> None:
        """Raise ``asyncio.CancelledError`` once the job was asked to stop.

        Raising it (rather than returning) tells the worker the job did not finish: a
        cancelled job ends CANCELLED, one stopped by shutdown goes back to waiting.
        """
        lease = self._lease
        if lease.stop_reason is not None:
            raise asyncio.CancelledError(lease.stop_detail or lease.stop_reason)

    # --- what a handler reports ----------------------------------------------------------

    def progress(self, percent: float | None = None, value: Any = None) -> None:
        """Report progress: a percent (0-100) and/or a JSON value (or :class:`Raw`), for
        example the partial output so far. Either one left None stays as it was."""
        if percent is not None and not 0 <= percent <= 100:
            raise ValueError(f"percent must be between 0 and 100 (got {percent!r})")
        payload: job_pb2.Payload | None = None if value is None else encode(value)
        self._on_loop(self._reports.progress, self._lease, percent, payload)

    def log(self, line: str) -> None:
        """Append one line to the job's log (lines over 16 KiB are cut)."""
        self._on_loop(self._reports.log, self._lease, _fit(str(line)))

    async def flush(self) -> None:
        """Wait until the progress and log lines reported so far reached the broker.

        Only for async handlers; there is no need to call it before returning (the worker
        sends reports before the job's outcome)."""
        await self._reports.flush(self._lease)

    def _on_loop(self, method: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            method(*args)
            return
        # RuntimeError: the worker's loop is closed, nobody listens anymore.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(method, *args)
