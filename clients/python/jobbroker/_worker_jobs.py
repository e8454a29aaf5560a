"""The leases a worker holds: start their handlers, report and settle their outcomes, renew
them, and apply the broker's signals to them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta

import grpc

from ._logs import job_fields
from ._worker_context import JobContext
from ._worker_runner import (
    Handler,
    Report,
    fail,
    failure,
    release,
    run_handler,
    stopped,
    unknown_name,
)
from ._worker_stream import WorkerStream
from .v1 import worker_service_pb2 as ws

log = logging.getLogger("jobbroker.worker")

STUCK_AFTER_S = 1.0
"""How long an abandoned handler may take to stop before a warning says it did not."""
EARLY_SIGNAL_TTL_S = 30.0
"""How long a signal for a lease not seen yet is kept (it may overtake the Lease reply)."""
_CANCEL = ws.SIGNAL_TYPE_CANCEL_REQUESTED
_LOST = ws.SIGNAL_TYPE_LEASE_LOST
_GONE = frozenset(
    {grpc.StatusCode.FAILED_PRECONDITION.value[0], grpc.StatusCode.NOT_FOUND.value[0]}
)
_REFUSED = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]}
)

Key = tuple[str, str, int]
"""A lease: (queue, job id, fence)."""


class Jobs:
    """Every lease of one worker, from the Lease reply to the acknowledged outcome.

    A lease takes a slot until its handler returned; at most ``concurrency`` handlers run. The
    outcome then travels to the broker while the slot serves the next job, but the worker never
    holds more than twice ``concurrency`` leases: past that, a slot is freed only once the
    broker acknowledged the outcome.

    A handler whose job was taken from it (timed out, lease lost, given back at shutdown) and
    that does not stop (a thread cannot be interrupted) keeps its slot until it returns: its
    thread is still busy, and leasing another job for the slot would run more handlers than
    ``concurrency``. Such handlers are counted in :attr:`abandoned`.
    """

    def __init__(
        self,
        worker_id: str,
        concurrency: int,
        lease_ms: int,
        lookup: Callable[[str], tuple[Handler, bool] | None],
        names: Callable[[], list[str]],
        executor: Executor | None,
        default_timeout: float | None = None,
    ) -> None:
        self.worker_id = worker_id
        self._concurrency = concurrency
        self._max_leases = 2 * concurrency
        self._renew_after = lease_ms / 3000
        self._lookup = lookup
        self._names = names
        self._executor = executor
        self._default_timeout = default_timeout
        self.leases: dict[Key, JobContext] = {}
        self.running = 0
        """Handlers running now, abandoned ones included."""
        self.abandoned: dict[JobContext, float] = {}
        """Handlers still running whose job the worker no longer holds (each keeps its slot),
        with the loop time they were abandoned at (``inf`` once a warning said so)."""
        self.changed = asyncio.Event()
        """Set whenever no handler is busy any more (abandoned ones aside)."""
        self._early: dict[Key, tuple[int, str, float]] = {}
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self.stream: WorkerStream
        self.free_slot: Callable[[], None]

    @property
    def busy(self) -> int:
        """Handlers running for a job the worker still holds."""
        return self.running - len(self.abandoned)

    # --- running -------------------------------------------------------------------------

    def accept(self, jobs: list[ws.LeasedJob]) -> None:
        """Run freshly leased jobs (their slots are taken already)."""
        loop = self._loop
        renew_at = loop.time() + self._renew_after
        default_timeout = self._default_timeout
        for job in jobs:
            entry = self._lookup(job.name)
            threaded = entry is not None and entry[1]
            ctx = JobContext(job, self.stream, self.worker_id, self._thread, threaded=threaded)
            key = (ctx.queue, ctx.id, job.fence)
            self.leases[key] = ctx
            ctx._renew_at = renew_at
            if entry is None:
                ctx._handler_done = True
                self.stream.outcome(ctx, unknown_name(ctx, self._names()))
                continue
            self.running += 1
            if default_timeout is not None and not job.timeout_at_ms:
                # The broker times out only jobs that carry a timeout; the others this worker
                # times out itself, or a hung handler would keep its job (renewed) forever.
                ctx._timer = loop.call_later(default_timeout, self._time_out, ctx)
                ctx._timeout_at = datetime.now(UTC) + timedelta(seconds=default_timeout)
            task = loop.create_task(run_handler(ctx, entry[0], threaded, self._executor))
            ctx._task = task
            task.add_done_callback(functools.partial(self._handler_done, ctx))
            if self._early:
                early = self._early.pop(key, None)
                if early is not None:
                    self._signal(ctx, early[0], early[1])

    def _handler_done(self, ctx: JobContext, task: asyncio.Task[Report | None]) -> None:
        ctx._handler_done = True
        self.running -= 1
        if ctx._timer is not None:
            ctx._timer.cancel()
        if self.abandoned.pop(ctx, 0.0) == math.inf:
            log.info(
                "worker %s: the handler of job %s/%s returned at last; its slot is free again",
                self.worker_id,
                ctx.queue,
                ctx.id,
                extra=job_fields(ctx.queue, ctx.id, worker_id=self.worker_id),
            )
        if ctx._slot_held and (ctx._settled or len(self.leases) <= self._max_leases):
            # Free the slot now: the next lease overlaps the outcome's trip to the broker.
            ctx._slot_held = False
            self.free_slot()
        if not self.busy:
            self.changed.set()
        if task.cancelled():
            outcome = stopped(ctx)
        elif (error := task.exception()) is not None:  # a bug of ours: fail the attempt, go on
            log.error(
                "worker %s: job %s/%s",
                self.worker_id,
                ctx.queue,
                ctx.id,
                exc_info=error,
                extra=job_fields(ctx.queue, ctx.id, worker_id=self.worker_id),
            )
            outcome = failure(ctx, error)
        else:
            outcome = task.result()
        if outcome is None or ctx._stop_reason == "lost":
            self._settle(ctx)
        else:
            self.stream.outcome(ctx, outcome)

    def _settle(self, ctx: JobContext) -> None:
        """The lease is over for this worker: free its slot."""
        if ctx._settled:
            return
        ctx._settled = True
        self.leases.pop((ctx.queue, ctx.id, ctx._fence), None)
        self.stream.forget(ctx)
        if ctx._slot_held and ctx._handler_done:  # else the handler frees it when it returns
            ctx._slot_held = False
            self.free_slot()

    def stop_all(self, detail: str) -> list[JobContext]:
        """Ask every running handler to stop (shutdown); return their contexts."""
        running = [
            ctx
            for ctx in self.leases.values()
            if not ctx._handler_done and ctx._stop_reason != "lost"
        ]
        for ctx in running:
            ctx._stop("shutdown", detail)
        return running

    def give_back(self, contexts: list[JobContext]) -> None:
        """Release the leases of handlers that did not stop; whatever they do later is not
        reported."""
        for ctx in contexts:
            if not ctx._handler_done and ctx._stop_reason != "lost":
                self._abandon(ctx, release(ctx.queue, ctx.id, ctx._token))

    def _abandon(self, ctx: JobContext, report: Report, detail: str = "") -> None:
        """Report the end of the job now, without waiting for its handler; whatever the
        handler does later is dropped. Its slot stays taken until it returns."""
        ctx._stop("lost", detail)
        self.stream.outcome(ctx, report)
        self._orphan(ctx)

    def _orphan(self, ctx: JobContext) -> None:
        if ctx._handler_done or ctx in self.abandoned:
            return
        self.abandoned[ctx] = self._loop.time()
        if not self.busy:
            self.changed.set()

    def _warn_stuck(self, now: float) -> None:
        """Say once which abandoned handlers did not stop (threads ignoring ``cancelled``)."""
        for ctx, since in self.abandoned.items():
            if now - since < STUCK_AFTER_S:
                continue
            self.abandoned[ctx] = math.inf
            log.warning(
                "worker %s: the handler of job %s/%s did not stop %.0f s after the job was "
                "taken from it (%s); it keeps its slot until it returns (%d of %d slots held "
                "this way)",
                self.worker_id,
                ctx.queue,
                ctx.id,
                now - since,
                ctx.stop_detail or "lease lost",
                len(self.abandoned),
                self._concurrency,
                extra=job_fields(ctx.queue, ctx.id, worker_id=self.worker_id),
            )

    def _time_out(self, ctx: JobContext) -> None:
        """The worker's ``default_attempt_timeout`` passed: fail the attempt (retried while
        attempts are left) and ask the handler to stop."""
        if ctx._handler_done or ctx._stop_reason == "lost":
            return
        seconds = self._default_timeout
        log.warning(
            "worker %s: job %s/%s ran past the worker's default_attempt_timeout (%g s); "
            "failing the attempt and stopping its handler",
            self.worker_id,
            ctx.queue,
            ctx.id,
            seconds,
            extra=job_fields(ctx.queue, ctx.id, worker_id=self.worker_id),
        )
        message = (
            f"the attempt ran longer than the worker's default_attempt_timeout ({seconds:g} s)"
        )
        self._abandon(ctx, fail(ctx, "TimeoutError", message), "TIMEOUT")

    async def tick(self) -> None:
        """Renew leases a third into their duration; forget stale early signals."""
        interval = min(1.0, max(0.05, self._renew_after / 2))
        while True:
            await asyncio.sleep(interval)
            now = self._loop.time()
            for ctx in self.leases.values():
                if ctx._renew_at <= now and not ctx._settled and ctx._stop_reason != "lost":
                    ctx._renew_at = now + self._renew_after
                    self.stream.renew(ctx)
            for key, (_, _, at) in list(self._early.items()):
                if now - at > EARLY_SIGNAL_TTL_S:
                    del self._early[key]
            if self.abandoned:
                self._warn_stuck(now)

    async def wait_idle(self, deadline: Callable[[], float]) -> None:
        """Wait until no handler is busy (abandoned ones aside) or ``deadline()`` (loop time;
        it may move) passed."""
        while self.busy and self._loop.time() < deadline():
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline()):
                    await self.changed.wait()

    # --- signals and the stream's answers (a StreamListener) -----------------------------

    def _signal(self, ctx: JobContext, kind: int, reason: str) -> None:
        if ctx._handler_done:
            return
        if kind == _CANCEL:
            log.info(
                "worker %s: job %s/%s cancelled",
                self.worker_id,
                ctx.queue,
                ctx.id,
                extra=job_fields(ctx.queue, ctx.id, worker_id=self.worker_id),
            )
            ctx._stop("cancel", reason)
        elif kind == _LOST:
            log.warning(
                "worker %s: lease of job %s/%s lost (%s); stopping it",
                self.worker_id,
                ctx.queue,
                ctx.id,
                reason,
                extra=job_fields(ctx.queue, ctx.id, worker_id=self.worker_id, reason=reason),
            )
            ctx._stop("lost", reason)
            self._orphan(ctx)
            self._settle(ctx)  # the lease is gone; its slot waits for the handler to return

    def stream_signal(self, signal: ws.Signal) -> None:
        key = (signal.queue, signal.job_id, signal.fence)
        ctx = self.leases.get(key)
        if ctx is not None:
            self._signal(ctx, signal.type, signal.reason)
        elif len(self._early) < 10_000:
            self._early[key] = (signal.type, signal.reason, self._loop.time())

    def stream_update(self, ctx: JobContext, status: ws.LeaseStatus) -> None:
        if not status.HasField("error"):
            ctx._expires_ms = status.lease_expires_at_ms
            return
        error = status.error
        if error.code in _GONE:
            self._signal(ctx, _LOST, error.reason)
            return
        log.warning(
            "worker %s: report for job %s/%s refused: %s %s",
            self.worker_id,
            ctx.queue,
            ctx.id,
            error.reason,
            error.message,
            extra=job_fields(ctx.queue, ctx.id, worker_id=self.worker_id, reason=error.reason),
        )
        ctx._renew_at = 0.0  # the renewal in it was refused too: renew at the next tick

    def stream_outcome(
        self, ctx: JobContext | None, report: Report, result: ws.OutcomeResult
    ) -> None:
        kind = report.kind
        if result.HasField("error"):
            error = result.error
            if ctx is not None and kind == "complete" and error.code in _REFUSED:
                # The result is over a limit or not valid JSON: fail the attempt instead, or
                # the job would sit active until its lease ran out.
                message = f"the broker refused the job's result: {error.message}"
                self.stream.outcome(ctx, fail(ctx, "ResultRejected", message))
                return
            log.warning(
                "worker %s: %s of job %s/%s refused: %s %s",
                self.worker_id,
                kind,
                result.queue,
                result.job_id,
                error.reason,
                error.message,
                extra=job_fields(
                    result.queue, result.job_id, worker_id=self.worker_id, reason=error.reason
                ),
            )
        if ctx is not None:
            self._settle(ctx)
