"""What a handler gets: the job, progress and log reporting, and the stop flag."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from .models import Progress, decode, encode
from .v1 import job_pb2, worker_service_pb2

if TYPE_CHECKING:
    from ._worker_stream import WorkerStream

StopReason = Literal["cancel", "lost", "shutdown"]

MAX_LOG_LINE_BYTES = 16_384
"""The broker's default ``--max-log-line-bytes``; longer lines are cut to fit."""


class DoNotRetry(Exception):
    """Raise from a handler to fail the job for good, whatever attempts are left.

    Subclass it for your own permanent errors: the failure's ``error_type`` is the name of the
    class raised (``class InvalidAddress(DoNotRetry)`` reports ``InvalidAddress``).
    """


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
        "_cancelled",
        "_expires_ms",
        "_handler_done",
        "_job",
        "_loop",
        "_loop_thread",
        "_renew_at",
        "_settled",
        "_slot_held",
        "_stop_reason",
        "_stream",
        "_task",
        "_threaded",
        "_timeout_at",
        "_timer",
        "attempt",
        "data",
        "id",
        "max_attempts",
        "name",
        "queue",
        "stop_detail",
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
    stop_detail: str
    """Why the job was asked to stop (the broker's reason, for example ``TIMEOUT``); empty
    until then."""

    def __init__(
        self,
        job: worker_service_pb2.LeasedJob,
        stream: WorkerStream,
        worker_id: str,
        loop_thread: int,
        *,
        threaded: bool,
    ) -> None:
        self._job = job
        self.id = job.job_id
        self.queue = job.queue
        self.name = job.name
        self.data = decode(job.data)
        self.attempt = job.attempt
        self.max_attempts = job.max_attempts
        self.worker_id = worker_id
        self.stop_detail = ""
        self._stream = stream
        self._loop = stream.loop
        self._loop_thread = loop_thread
        # A thread reads the flag while the loop sets it: create it up front for sync handlers;
        # async handlers (same thread as the loop) get it on first use.
        self._cancelled: threading.Event | None = threading.Event() if threaded else None
        self._threaded = threaded
        self._expires_ms = job.lease_expires_at_ms
        self._renew_at = 0.0
        self._stop_reason: StopReason | None = None
        self._task: asyncio.Task[Any] | None = None
        self._handler_done = False
        self._settled = False
        self._slot_held = True
        self._timeout_at: datetime | None = None  # the worker's default timeout, when it applies
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<JobContext {self.queue}/{self.id} {self.name!r} attempt {self.attempt}>"

    # --- what a handler reads ------------------------------------------------------------

    @property
    def cancelled(self) -> threading.Event:
        """Set when the job should stop: a Cancel arrived, the lease was lost (timeout), the
        worker's ``default_attempt_timeout`` passed, or the worker is shutting down and the
        grace period ran out. Sync handlers poll it; an
        async handler is cancelled as well (``asyncio.CancelledError``)."""
        if self._cancelled is None:
            self._cancelled = threading.Event()
            if self._stop_reason is not None:
                self._cancelled.set()
        return self._cancelled

    @property
    def lease_expires_at(self) -> datetime | None:
        """When the lease runs out unless renewed (the worker renews it for you)."""
        return _datetime(self._expires_ms)

    @property
    def timeout_at(self) -> datetime | None:
        """When the attempt times out: the job's ``timeout`` option, else the worker's
        ``default_attempt_timeout``; None without either."""
        return self._timeout_at or _datetime(self._job.timeout_at_ms)

    @property
    def previous_progress(self) -> Progress:
        """The progress a previous attempt left, to resume from."""
        return Progress.from_proto(self._job.progress)

    def raise_if_cancelled(self) -> None:
        """Raise ``asyncio.CancelledError`` once the job was asked to stop.

        Raising it (rather than returning) tells the worker the job did not finish: a
        cancelled job ends CANCELLED, one stopped by shutdown goes back to waiting.
        """
        if self._stop_reason is not None:
            raise asyncio.CancelledError(self.stop_detail or self._stop_reason)

    # --- what a handler reports ----------------------------------------------------------

    def progress(self, percent: float | None = None, value: Any = None) -> None:
        """Report progress: a percent (0-100) and/or a JSON value (or :class:`Raw`), for
        example the partial output so far. Either one left None stays as it was."""
        if percent is not None and not 0 <= percent <= 100:
            raise ValueError(f"percent must be between 0 and 100 (got {percent!r})")
        payload: job_pb2.Payload | None = None if value is None else encode(value)
        self._call(self._stream.progress, self, percent, payload)

    def log(self, line: str) -> None:
        """Append one line to the job's log (lines over 16 KiB are cut)."""
        self._call(self._stream.log, self, _fit(str(line)))

    async def flush(self) -> None:
        """Wait until the progress and log lines reported so far reached the broker.

        Only for async handlers; there is no need to call it before returning (the worker
        sends reports before the job's outcome)."""
        await self._stream.flush(self)

    def _call(self, method: Any, *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            method(*args)
            return
        # RuntimeError: the worker's loop is closed, nobody listens anymore.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(method, *args)

    # --- the worker's side ---------------------------------------------------------------

    @property
    def _token(self) -> str:
        return self._job.token

    @property
    def _fence(self) -> int:
        return self._job.fence

    @property
    def _finished(self) -> bool:
        """No more reports are wanted for this lease."""
        return self._handler_done or self._stop_reason == "lost"

    def _stop(self, reason: StopReason, detail: str = "") -> None:
        """Ask the handler to stop; a later reason does not undo a lost lease."""
        if self._stop_reason == "lost":
            return
        self._stop_reason = reason
        if detail:
            self.stop_detail = detail
        if self._cancelled is not None:
            self._cancelled.set()
        # A thread cannot be interrupted: a sync handler only sees the flag.
        task = self._task
        if not self._threaded and task is not None and not task.done() and not self._handler_done:
            task.cancel()
