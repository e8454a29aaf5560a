"""The worker's record of one lease: the state the job runner, the stream and the leasing code
share, from the Lease reply to the acknowledged outcome.

A handler never sees it: its :class:`~jobbroker.JobContext` reads what it may (the stop flag,
the lease's expiry) and reports through the stream. The record imports nothing of the other
worker modules, so each of them can depend on it without a circle.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from typing import Any, Literal

from ..v1 import worker_service_pb2 as ws

StopReason = Literal["cancel", "lost", "shutdown"]
"""Why a handler was asked to stop: a Cancel, a lost lease (or a job the worker gave up on:
timed out, given back at shutdown), or the worker's shutdown."""

Key = tuple[str, str, int]
"""A lease: (queue, job id, fence)."""


class Lease:
    """One leased job as the worker tracks it (loop thread only, except :attr:`cancelled`)."""

    __slots__ = (
        "_cancelled",
        "expires_ms",
        "fence",
        "handler_done",
        "job",
        "job_id",
        "queue",
        "renew_at",
        "settled",
        "slot_held",
        "stop_detail",
        "stop_reason",
        "task",
        "threaded",
        "timeout_at",
        "timer",
        "token",
    )

    def __init__(self, job: ws.LeasedJob, *, threaded: bool, renew_at: float) -> None:
        self.job = job
        """The Lease reply's entry for the job."""
        # Copied out once: the stream reads them for every report.
        self.queue: str = job.queue
        self.job_id: str = job.job_id
        self.token: str = job.token
        self.fence: int = job.fence
        self.threaded = threaded
        """The handler runs in a thread (it cannot be interrupted, only asked to stop)."""
        self.expires_ms = job.lease_expires_at_ms
        """When the lease runs out unless renewed (ms since the epoch, broker time)."""
        self.renew_at = renew_at
        """Loop time of the next renewal."""
        self.stop_reason: StopReason | None = None
        """Why the handler was asked to stop; None while it may run on."""
        self.stop_detail = ""
        """The reason in words (the broker's reason, for example ``TIMEOUT``)."""
        self.task: asyncio.Task[Any] | None = None
        """The task running the handler."""
        self.handler_done = False
        """The handler returned (or never ran: no handler for the job's name)."""
        self.settled = False
        """The lease is over for this worker: its outcome was acknowledged or it was lost."""
        self.slot_held = True
        """The lease still takes one of the worker's ``concurrency`` slots."""
        self.timeout_at: datetime | None = None
        """When the worker's ``default_attempt_timeout`` ends the attempt, when it applies."""
        self.timer: asyncio.TimerHandle | None = None
        """The timer of that timeout."""
        # A thread reads the flag while the loop sets it: made up front for threaded handlers;
        # async ones (on the loop's thread) get it on first use.
        self._cancelled: threading.Event | None = threading.Event() if threaded else None

    def __repr__(self) -> str:
        return f"<Lease {self.queue}/{self.job_id} fence {self.fence}>"

    @property
    def key(self) -> Key:
        return (self.queue, self.job_id, self.fence)

    @property
    def lost(self) -> bool:
        """The worker no longer holds the lease (or gave up on the job): nothing more of the
        handler is reported."""
        return self.stop_reason == "lost"

    @property
    def finished(self) -> bool:
        """No more progress or log lines are wanted for this lease."""
        return self.handler_done or self.stop_reason == "lost"

    @property
    def cancelled(self) -> threading.Event:
        """Set once the handler is asked to stop."""
        if self._cancelled is None:
            self._cancelled = threading.Event()
            if self.stop_reason is not None:
                self._cancelled.set()
        return self._cancelled

    def stop(self, reason: StopReason, detail: str = "") -> None:
        """Ask the handler to stop; a later reason does not undo a lost lease."""
        if self.stop_reason == "lost":
            return
        self.stop_reason = reason
        if detail:
            self.stop_detail = detail
        if self._cancelled is not None:
            self._cancelled.set()
        # A thread cannot be interrupted: a sync handler only sees the flag.
        task = self.task
        if not self.threaded and task is not None and not task.done() and not self.handler_done:
            task.cancel()
