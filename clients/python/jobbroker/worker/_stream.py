"""The worker's one ReportProgress stream: batched reports out, acknowledgements and signals in.

Outcomes, progress, log lines and renewals wait in an outbox and leave in one message whenever
the stream has room: at most ``WINDOW`` messages are unacknowledged at a time, so an idle worker
sends at once and a busy one packs everything that piled up meanwhile into the next message.
Messages whose acknowledgement never came (broker restart, another replica) are sent again on
the next stream; a LEASE_EXPIRED answer to a repeat is then expected and harmless.

A message may also ask for jobs (``lease``, from the worker's :class:`LeaseSource`): the broker
applies its outcomes, leases, and sends the jobs in the acknowledgement, so while a queue has
jobs, one message per batch carries both the batch's outcomes and the request for the next. A
request that finds no job waits for one (``wait_ms``): the acknowledgement says so
(``lease_waiting``) and the jobs come later in a response naming the message (``lease_seq``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import grpc

from .._transport import PERMANENT, RetryBackoff
from ..errors import from_rpc_error
from ..v1 import job_pb2
from ..v1 import worker_service_pb2 as ws
from ._lease import Lease
from ._outcomes import Report

if TYPE_CHECKING:
    from ..v1.worker_service_pb2_grpc import WorkerServiceAsyncStub

log = logging.getLogger("jobbroker.worker")

WINDOW = 2
"""Messages in flight (sent, not yet acknowledged) at most."""
MAX_ITEMS = 500
"""Outcomes, and updates, per message at most."""
HEARTBEAT_S = 10.0
"""An idle stream sends an empty message this often, to notice a dead connection."""
ACK_TIMEOUT_S = 20.0
"""A stream whose oldest message waits longer than this for its acknowledgement is replaced."""
ITEM_RETRY_S = 0.5
"""Wait before sending again an item the broker answered UNAVAILABLE (Redis down)."""
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


class StreamListener(Protocol):
    """What the worker does with the broker's answers."""

    def stream_update(self, lease: Lease, status: ws.LeaseStatus) -> None: ...

    def stream_outcome(
        self, lease: Lease | None, report: Report, result: ws.OutcomeResult
    ) -> None: ...

    def stream_signal(self, signal: ws.Signal) -> None: ...


@dataclass(slots=True)
class LeaseAsk:
    """A request for jobs riding on one message."""

    request: ws.StreamLease
    asked: int
    """How many jobs it asks for (set aside by the asker until the answer)."""


class LeaseSource(Protocol):
    """Who asks for jobs on the stream, and gets them."""

    def lease_wanted(self) -> bool:
        """Whether a message should go out for jobs alone (no report to carry)."""
        ...

    def lease_ask(self) -> LeaseAsk | None:
        """The request for jobs the next message carries, if any (what it asks is set aside
        until :meth:`lease_answered` or :meth:`lease_unanswered`)."""
        ...

    def lease_answered(self, ask: LeaseAsk, response: ws.ReportProgressResponse) -> None:
        """The jobs for ``ask`` came (in its message's acknowledgement, or later for one that
        waited: ``response.lease_seq`` set)."""
        ...

    def lease_waiting(self, ask: LeaseAsk) -> None:
        """The broker holds ``ask`` until jobs come (StreamLease.wait_ms)."""
        ...

    def lease_unanswered(self, ask: LeaseAsk) -> None:
        """The message was never acknowledged (the stream broke): nothing came for ``ask``."""
        ...


@dataclass(slots=True)
class _Update:
    percent: float | None = None
    value: job_pb2.Payload | None = None
    logs: list[str] = field(default_factory=list)

    def merge_older(self, older: _Update) -> None:
        self.logs[:0] = older.logs
        if self.percent is None:
            self.percent = older.percent
        if self.value is None:
            self.value = older.value


@dataclass(slots=True)
class _Sent:
    at: float
    updates: list[tuple[Lease, _Update]]
    outcomes: list[tuple[Lease | None, Report]]
    ask: LeaseAsk | None = None


_Call = grpc.aio.StreamStreamCall[ws.ReportProgressRequest, ws.ReportProgressResponse]


class _StreamLost(Exception):
    pass


class WorkerStream:
    """One worker's stream, reconnected until :meth:`close`."""

    def __init__(
        self,
        stub: WorkerServiceAsyncStub,
        worker_id: str,
        queues: Sequence[str],
        lease_ms: int,
        listener: StreamListener,
    ) -> None:
        self._stub = stub
        self.worker_id = worker_id
        self._queues = list(queues)
        self._lease_ms = lease_ms
        self._renew_after = lease_ms / 3000
        self._listener = listener
        self._loop = asyncio.get_running_loop()
        self.ready = asyncio.Event()
        """Set while a stream is open and the broker acknowledged its first message."""
        self._outcomes: deque[tuple[Lease | None, Report]] = deque()
        self._updates: dict[Lease, _Update] = {}
        self._inflight: dict[int, _Sent] = {}
        self._waiting: dict[int, LeaseAsk] = {}
        """Requests for jobs the broker holds until jobs come, by their message's seq."""
        self._end_wait = False
        """The next message ends the broker's waiting request (``end_wait``)."""
        self._retrying = 0
        self._seq = 0
        self._hello_seq = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._flushes: dict[Lease, list[asyncio.Future[None]]] = {}
        self._call: _Call | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False
        self.lease_source: LeaseSource | None = None
        """Asks for jobs in the messages (set before :meth:`start`); None: never."""
        self.sent_messages = self.sent_outcomes = 0

    # --- the outbox (loop thread only) -----------------------------------------------------

    def outcome(self, lease: Lease | None, report: Report) -> None:
        """Queue an outcome (lease None: a job the worker never ran, given back)."""
        self._outcomes.append((lease, report))
        self._wake.set()

    def progress(self, lease: Lease, percent: float | None, value: job_pb2.Payload | None) -> None:
        if lease.finished:
            return
        update = self._updates.get(lease) or self._updates.setdefault(lease, _Update())
        if percent is not None:
            update.percent = percent
        if value is not None:
            update.value = value
        self._wake.set()

    def log(self, lease: Lease, line: str) -> None:
        if lease.finished:
            return
        update = self._updates.get(lease) or self._updates.setdefault(lease, _Update())
        update.logs.append(line)
        self._wake.set()

    def renew(self, lease: Lease) -> None:
        """Renew a lease with the next message (any update of a lease renews it)."""
        if lease not in self._updates:
            self._updates[lease] = _Update()
            self._wake.set()

    def forget(self, lease: Lease) -> None:
        """Drop the pending reports of a lease that is gone."""
        self._updates.pop(lease, None)
        self._resolve_flushes(lease)

    async def flush(self, lease: Lease) -> None:
        """Wait until the reports of ``lease`` queued so far were acknowledged."""
        if not self._holds(lease) or self._closed:
            return
        future = self._loop.create_future()
        self._flushes.setdefault(lease, []).append(future)
        self._wake.set()
        await future

    def _holds(self, lease: Lease) -> bool:
        return lease in self._updates or any(
            held is lease for sent in self._inflight.values() for held, _ in sent.updates
        )

    def _resolve_flushes(self, lease: Lease) -> None:
        for future in self._flushes.pop(lease, ()):
            if not future.done():
                future.set_result(None)

    @property
    def idle(self) -> bool:
        """No report waits to be sent or acknowledged (an empty message may be in flight)."""
        return not (
            self._outcomes
            or self._updates
            or self._retrying
            or any(sent.updates or sent.outcomes for sent in self._inflight.values())
        )

    def _take(self) -> ws.ReportProgressRequest:
        self._seq += 1
        request = ws.ReportProgressRequest(seq=self._seq)
        updates: list[tuple[Lease, _Update]] = []
        renew_at = self._loop.time() + self._renew_after
        while self._updates and len(updates) < MAX_ITEMS:
            lease, update = next(iter(self._updates.items()))
            del self._updates[lease]
            if lease.settled or lease.lost:
                continue
            message = request.updates.add(
                queue=lease.queue,
                job_id=lease.job_id,
                token=lease.token,
                lease_ms=self._lease_ms,
                log_lines=update.logs,
            )
            if update.percent is not None:
                message.percent = update.percent
            if update.value is not None:
                message.value.CopyFrom(update.value)
            lease.renew_at = renew_at
            updates.append((lease, update))
        outcomes: list[tuple[Lease | None, Report]] = []
        add = request.outcomes.add
        while self._outcomes and len(outcomes) < MAX_ITEMS:
            item = self._outcomes.popleft()
            item[1].write(add())
            outcomes.append(item)
        ask = self.lease_source.lease_ask() if self.lease_source is not None else None
        if ask is not None:
            request.lease.CopyFrom(ask.request)
        if self._end_wait:
            request.end_wait, self._end_wait = True, False
        self._inflight[self._seq] = _Sent(self._loop.time(), updates, outcomes, ask)
        self.sent_messages += 1
        self.sent_outcomes += len(outcomes)
        return request

    def _requeue(self, sent: _Sent) -> None:
        """Put the items of an unacknowledged message back in front of the outbox (its request
        for jobs is not repeated: the next message asks afresh)."""
        if sent.ask is not None and self.lease_source is not None:
            self.lease_source.lease_unanswered(sent.ask)
            sent.ask = None
        self._outcomes.extendleft(reversed(sent.outcomes))
        for lease, update in sent.updates:
            pending = self._updates.get(lease)
            if pending is None:
                self._updates[lease] = update
            else:
                pending.merge_older(update)

    # --- acknowledgements ----------------------------------------------------------------

    def _on_response(self, response: ws.ReportProgressResponse) -> None:
        for signal in response.signals:
            self._listener.stream_signal(signal)
        if response.lease_seq:  # the jobs of a request that waited
            ask = self._waiting.pop(response.lease_seq, None)
            if ask is not None and self.lease_source is not None:
                self.lease_source.lease_answered(ask, response)
            return
        sent = self._inflight.pop(response.seq, None) if response.seq else None
        if sent is None:
            return
        if response.seq == self._hello_seq:
            if self._failing:
                log.info("worker %s: stream to the broker open again", self.worker_id)
            self._failing = False
            self.ready.set()
        updates, outcomes = sent.updates, sent.outcomes
        statuses, results = response.leases, response.outcomes
        if len(statuses) < len(updates) or len(results) < len(outcomes):
            self._unanswered(response.seq, sent, len(statuses), len(results))
        for (lease, update), status in zip(updates, statuses, strict=False):
            if status.HasField("error") and status.error.code == _UNAVAILABLE:
                self._later(self._retry_update, lease, update)
                continue
            self._listener.stream_update(lease, status)
            if lease in self._flushes and not self._holds(lease):
                self._resolve_flushes(lease)
        for (maybe_lease, report), result in zip(outcomes, results, strict=False):
            if result.HasField("error") and result.error.code == _UNAVAILABLE:
                self._later(self.outcome, maybe_lease, report)
                continue
            self._listener.stream_outcome(maybe_lease, report, result)
        if sent.ask is not None and self.lease_source is not None:
            if response.lease_waiting:
                self._waiting[response.seq] = sent.ask
                self.lease_source.lease_waiting(sent.ask)
            else:
                self.lease_source.lease_answered(sent.ask, response)
        if self.idle:
            self._drained.set()
        self._wake.set()

    def _unanswered(self, seq: int, sent: _Sent, statuses: int, results: int) -> None:
        """The acknowledgement of message ``seq`` answered fewer items than it carried (a
        broker bug, or a broker that does not know some item): send the others again, as
        after a reconnection, rather than leave their outcomes unreported."""
        log.warning(
            "worker %s: the broker acknowledged message %d with %d of its %d lease updates and "
            "%d of its %d outcomes; sending the others again",
            self.worker_id,
            seq,
            statuses,
            len(sent.updates),
            results,
            len(sent.outcomes),
        )
        # Later, like an item answered UNAVAILABLE: a broker that keeps doing it is not sent
        # the same items in a tight loop.
        self._later(self._resend, _Sent(sent.at, sent.updates[statuses:], sent.outcomes[results:]))

    def _resend(self, sent: _Sent) -> None:
        self._requeue(sent)
        self._wake.set()

    def _retry_update(self, lease: Lease, update: _Update) -> None:
        if lease.finished or lease.settled:
            return
        pending = self._updates.get(lease)
        if pending is None:
            self._updates[lease] = update
        else:
            pending.merge_older(update)
        self._wake.set()

    def _later(self, method: object, *args: object) -> None:
        self._retrying += 1

        def run() -> None:
            self._retrying -= 1
            method(*args)  # type: ignore[operator]

        self._loop.call_later(ITEM_RETRY_S, run)

    # --- the connection ------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Open the stream (and reopen it whenever it breaks) until :meth:`close`."""
        self._task = asyncio.create_task(self._run(), name=f"jobbroker-stream-{self.worker_id}")
        return self._task

    async def _run(self) -> None:
        backoff = RetryBackoff()
        while not self._closed:
            # Once a stream failed, the next one waits for the channel to connect (gRPC tries
            # again at most every RECONNECT_MAX_S) and opens the moment it does, instead of
            # failing at once until a backoff happens to end after the broker is back.
            call = self._call = self._stub.ReportProgress(wait_for_ready=self._failing)
            try:
                await self._session(call)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                # Both mean the call is over (a write to a finished call is InvalidStateError).
                if not call.done():
                    call.cancel()
                code, details = await call.code(), await call.details()
                if code in PERMANENT:
                    error = grpc.aio.AioRpcError(
                        code, grpc.aio.Metadata(), await call.trailing_metadata(), details
                    )
                    raise from_rpc_error(error) from None
                self._report_failure(f"{code.name}: {details}")
            except _StreamLost as exc:
                self._report_failure(str(exc))
            except Exception as exc:  # a bug of ours must not end the worker: start afresh
                log.exception("worker %s: stream failed", self.worker_id)
                self._report_failure(repr(exc))
            finally:
                if self.ready.is_set():  # this stream did work: start backing off afresh
                    backoff.reset()
                self.ready.clear()
                call.cancel()
                for seq in sorted(self._inflight, reverse=True):
                    self._requeue(self._inflight.pop(seq))
                waited, self._waiting = list(self._waiting.values()), {}
                for ask in waited:  # the broker dropped them with the stream
                    if self.lease_source is not None:
                        self.lease_source.lease_unanswered(ask)
            await self._pause(backoff.next_delay())

    def _report_failure(self, why: str) -> None:
        level = logging.DEBUG if self._failing else logging.WARNING
        log.log(
            level, "worker %s: stream to the broker lost (%s); reconnecting", self.worker_id, why
        )
        self._failing = True

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not self._closed:
                    await self._wake.wait()
                    self._wake.clear()

    async def _session(self, call: _Call) -> None:
        self._seq += 1
        self._hello_seq = self._seq
        hello = ws.ReportProgressRequest(
            seq=self._seq, worker_id=self.worker_id, queues=self._queues
        )
        sent = self._inflight[self._seq] = _Sent(self._loop.time(), [], [])
        await call.write(hello)
        sent.at = self._loop.time()  # the write waited for the broker: the ack clock starts now
        reader = asyncio.create_task(self._read(call))
        writer = asyncio.create_task(self._write(call))
        try:
            while True:
                done, _ = await asyncio.wait(
                    (reader, writer), timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    task.result()
                if done:
                    raise _StreamLost("the broker ended the stream")
                oldest = min((s.at for s in self._inflight.values()), default=None)
                if oldest is not None and self._loop.time() - oldest > ACK_TIMEOUT_S:
                    raise _StreamLost(f"no acknowledgement for {ACK_TIMEOUT_S:.0f} s")
        finally:
            for task in (reader, writer):
                task.cancel()
            for task in (reader, writer):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _read(self, call: _Call) -> None:
        while True:
            response = await call.read()
            if not isinstance(response, ws.ReportProgressResponse):  # grpc.aio.EOF
                return
            self._on_response(response)

    async def _write(self, call: _Call) -> None:
        last_sent = self._loop.time()
        while True:
            if len(self._inflight) < WINDOW and (
                self._outcomes or self._updates or self._end_wait or self._lease_wanted()
            ):
                await call.write(self._take())
                last_sent = self._loop.time()
                continue
            self._wake.clear()
            # Idle (nothing in flight): wake for a heartbeat, an empty message acknowledged
            # like any other, so a dead connection shows. In flight: the watchdog is on it.
            beat = None if self._inflight else last_sent + HEARTBEAT_S
            try:
                async with asyncio.timeout_at(beat):
                    await self._wake.wait()
            except TimeoutError:
                await call.write(self._take())
                last_sent = self._loop.time()

    def _lease_wanted(self) -> bool:
        return self.lease_source is not None and self.lease_source.lease_wanted()

    def end_wait(self) -> None:
        """Have the next message end the request for jobs that waits (leasing stopped), so the
        broker leases nothing more for this worker: not even the jobs it gives back. Sent even
        when no request is known to wait: one sent meanwhile may be acknowledged as waiting
        only after this."""
        if self.lease_source is not None:
            self._end_wait = True
            self._wake.set()

    @property
    def waiting_for_jobs(self) -> bool:
        """The broker holds a request for jobs of this stream until jobs come."""
        return bool(self._waiting)

    def wake(self) -> None:
        """Look again whether a message should go out (the lease source wants jobs)."""
        self._wake.set()

    async def close(self, within: float) -> None:
        """Wait up to ``within`` seconds for everything queued to be acknowledged, then end."""
        if self._closed:
            return
        if not self.idle:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    while not self.idle:
                        await self._drained.wait()
                        self._drained.clear()
        if not self.idle:
            log.warning(
                "worker %s: closing with %d outcome(s) not acknowledged by the broker; "
                "their leases will expire and the jobs run again",
                self.worker_id,
                len(self._outcomes) + sum(len(s.outcomes) for s in self._inflight.values()),
            )
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for futures in self._flushes.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)
        self._flushes.clear()
