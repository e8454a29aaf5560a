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

from ..logs import job_fields
from ..v1 import worker_service_pb2 as ws
from ._context import JobContext
from ._lease import Key, Lease
from ._outcomes import Report, fail, release, stopped, unknown_name
from ._runner import Handler, failure, run_handler
from ._stream import WorkerStream

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
        self.leases: dict[Key, Lease] = {}
        self.running = 0
        """Handlers running now, abandoned ones included."""
        self.abandoned: dict[Lease, float] = {}
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
            lease = Lease(job, threaded=entry is not None and entry[1], renew_at=renew_at)
            key = lease.key
            self.leases[key] = lease
            if entry is None:
                lease.handler_done = True
                self.stream.outcome(lease, unknown_name(lease, self.worker_id, self._names()))
                continue
            self.running += 1
            if default_timeout is not None and not job.timeout_at_ms:
                # The broker times out only jobs that carry a timeout; the others this worker
                # times out itself, or a hung handler would keep its job (renewed) forever.
                lease.timer = loop.call_later(default_timeout, self._time_out, lease)
                lease.timeout_at = datetime.now(UTC) + timedelta(seconds=default_timeout)
            ctx = JobContext(lease, self.stream, self.worker_id, loop, self._thread)
            task = loop.create_task(run_handler(lease, ctx, entry[0], self._executor))
            lease.task = task
            task.add_done_callback(functools.partial(self._handler_done, lease))
            if self._early:
                early = self._early.pop(key, None)
                if early is not None:
                    self._signal(lease, early[0], early[1])

    def _handler_done(self, lease: Lease, task: asyncio.Task[Report | None]) -> None:
        lease.handler_done = True
        self.running -= 1
        if lease.timer is not None:
            lease.timer.cancel()
        if self.abandoned.pop(lease, 0.0) == math.inf:
            log.info(
                "worker %s: the handler of job %s/%s returned at last; its slot is free again",
                self.worker_id,
                lease.queue,
                lease.job_id,
                extra=job_fields(lease.queue, lease.job_id, worker_id=self.worker_id),
            )
        if lease.slot_held and (lease.settled or len(self.leases) <= self._max_leases):
            # Free the slot now: the next lease overlaps the outcome's trip to the broker.
            lease.slot_held = False
            self.free_slot()
        if not self.busy:
            self.changed.set()
        if task.cancelled():
            outcome = stopped(lease)
        elif (error := task.exception()) is not None:  # a bug of ours: fail the attempt, go on
            log.error(
                "worker %s: job %s/%s",
                self.worker_id,
                lease.queue,
                lease.job_id,
                exc_info=error,
                extra=job_fields(lease.queue, lease.job_id, worker_id=self.worker_id),
            )
            outcome = failure(lease, error)
        else:
            outcome = task.result()
        if outcome is None or lease.lost:
            self._settle(lease)
        else:
            self.stream.outcome(lease, outcome)

    def _settle(self, lease: Lease) -> None:
        """The lease is over for this worker: free its slot."""
        if lease.settled:
            return
        lease.settled = True
        self.leases.pop(lease.key, None)
        self.stream.forget(lease)
        if lease.slot_held and lease.handler_done:  # else the handler frees it when it returns
            lease.slot_held = False
            self.free_slot()

    def stop_all(self, detail: str) -> list[Lease]:
        """Ask every running handler to stop (shutdown); return their leases."""
        running = [
            lease for lease in self.leases.values() if not lease.handler_done and not lease.lost
        ]
        for lease in running:
            lease.stop("shutdown", detail)
        return running

    def give_back(self, leases: list[Lease]) -> None:
        """Release the leases of handlers that did not stop; whatever they do later is not
        reported."""
        for lease in leases:
            if not lease.handler_done and not lease.lost:
                self._abandon(lease, release(lease.queue, lease.job_id, lease.token))

    def _abandon(self, lease: Lease, report: Report, detail: str = "") -> None:
        """Report the end of the job now, without waiting for its handler; whatever the
        handler does later is dropped. Its slot stays taken until it returns."""
        lease.stop("lost", detail)
        self.stream.outcome(lease, report)
        self._orphan(lease)

    def _orphan(self, lease: Lease) -> None:
        if lease.handler_done or lease in self.abandoned:
            return
        self.abandoned[lease] = self._loop.time()
        if not self.busy:
            self.changed.set()

    def _warn_stuck(self, now: float) -> None:
        """Say once which abandoned handlers did not stop (threads ignoring ``cancelled``)."""
        for lease, since in self.abandoned.items():
            if now - since < STUCK_AFTER_S:
                continue
            self.abandoned[lease] = math.inf
            log.warning(
                "worker %s: the handler of job %s/%s did not stop %.0f s after the job was "
                "taken from it (%s); it keeps its slot until it returns (%d of %d slots held "
                "this way)",
                self.worker_id,
                lease.queue,
                lease.job_id,
                now - since,
                lease.stop_detail or "lease lost",
                len(self.abandoned),
                self._concurrency,
                extra=job_fields(lease.queue, lease.job_id, worker_id=self.worker_id),
            )

    def _time_out(self, lease: Lease) -> None:
        """The worker's ``default_attempt_timeout`` passed: fail the attempt (retried while
        attempts are left) and ask the handler to stop."""
        if lease.handler_done or lease.lost:
            return
        seconds = self._default_timeout
        log.warning(
            "worker %s: job %s/%s ran past the worker's default_attempt_timeout (%g s); "
            "failing the attempt and stopping its handler",
            self.worker_id,
            lease.queue,
            lease.job_id,
            seconds,
            extra=job_fields(lease.queue, lease.job_id, worker_id=self.worker_id),
        )
        message = (
            f"the attempt ran longer than the worker's default_attempt_timeout ({seconds:g} s)"
        )
        self._abandon(lease, fail(lease, "TimeoutError", message), "TIMEOUT")

    async def tick(self) -> None:
        """Renew leases a third into their duration; forget stale early signals."""
        interval = min(1.0, max(0.05, self._renew_after / 2))
        while True:
            await asyncio.sleep(interval)
            now = self._loop.time()
            for lease in self.leases.values():
                if lease.renew_at <= now and not lease.settled and not lease.lost:
                    lease.renew_at = now + self._renew_after
                    self.stream.renew(lease)
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

    def _signal(self, lease: Lease, kind: int, reason: str) -> None:
        if lease.handler_done:
            return
        if kind == _CANCEL:
            log.info(
                "worker %s: job %s/%s cancelled",
                self.worker_id,
                lease.queue,
                lease.job_id,
                extra=job_fields(lease.queue, lease.job_id, worker_id=self.worker_id),
            )
            lease.stop("cancel", reason)
        elif kind == _LOST:
            log.warning(
                "worker %s: lease of job %s/%s lost (%s); stopping it",
                self.worker_id,
                lease.queue,
                lease.job_id,
                reason,
                extra=job_fields(
                    lease.queue, lease.job_id, worker_id=self.worker_id, reason=reason
                ),
            )
            lease.stop("lost", reason)
            self._orphan(lease)
            self._settle(lease)  # the lease is gone; its slot waits for the handler to return

    def stream_signal(self, signal: ws.Signal) -> None:
        key = (signal.queue, signal.job_id, signal.fence)
        lease = self.leases.get(key)
        if lease is not None:
            self._signal(lease, signal.type, signal.reason)
        elif len(self._early) < 10_000:
            self._early[key] = (signal.type, signal.reason, self._loop.time())

    def stream_update(self, lease: Lease, status: ws.LeaseStatus) -> None:
        if not status.HasField("error"):
            lease.expires_ms = status.lease_expires_at_ms
            return
        error = status.error
        if error.code in _GONE:
            self._signal(lease, _LOST, error.reason)
            return
        log.warning(
            "worker %s: report for job %s/%s refused: %s %s",
            self.worker_id,
            lease.queue,
            lease.job_id,
            error.reason,
            error.message,
            extra=job_fields(
                lease.queue, lease.job_id, worker_id=self.worker_id, reason=error.reason
            ),
        )
        lease.renew_at = 0.0  # the renewal in it was refused too: renew at the next tick

    def stream_outcome(self, lease: Lease | None, report: Report, result: ws.OutcomeResult) -> None:
        kind = report.kind
        if result.HasField("error"):
            error = result.error
            if lease is not None and kind == "complete" and error.code in _REFUSED:
                # The result is over a limit or not valid JSON: fail the attempt instead, or
                # the job would sit active until its lease ran out.
                message = f"the broker refused the job's result: {error.message}"
                self.stream.outcome(lease, fail(lease, "ResultRejected", message))
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
        if lease is not None:
            self._settle(lease)
