"""The worker's ReportProgress stream (``_worker_stream``) on its own, against an in-process
stand-in for the gRPC call object: what the stream writes, and the replies each test makes up.

The stand-in is the transport seam only (write, read, cancel, status); it does none of the
broker's work, so these tests pin down what the stream does with whatever a broker answers:
batching, acknowledgements, items sent again, reconnection and refusal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import pytest
from jobbroker.errors import Unauthenticated
from jobbroker.v1 import worker_service_pb2 as ws
from jobbroker.worker import _stream as _worker_stream
from jobbroker.worker._lease import Lease
from jobbroker.worker._outcomes import Report
from jobbroker.worker._stream import WINDOW, WorkerStream

from .worker_harness import until

T = TypeVar("T")

WITHIN = 5.0
"""How long a test waits for something the stream does at once (generous: a loaded machine)."""
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


async def soon(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, WITHIN)


class FakeCall:
    """One ReportProgress call: records what the stream writes, reads what the test replies."""

    def __init__(self, wait_for_ready: bool | None) -> None:
        self.wait_for_ready = wait_for_ready
        self.written: asyncio.Queue[ws.ReportProgressRequest] = asyncio.Queue()
        self._replies: asyncio.Queue[ws.ReportProgressResponse | BaseException] = asyncio.Queue()
        self._code: grpc.StatusCode | None = None
        self._details = ""

    async def write(self, request: ws.ReportProgressRequest) -> None:
        if self._code is not None:
            raise asyncio.InvalidStateError("the call is over")  # what grpc.aio raises
        self.written.put_nowait(request)

    async def read(self) -> ws.ReportProgressResponse:
        item = await self._replies.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def reply(self, response: ws.ReportProgressResponse) -> None:
        self._replies.put_nowait(response)

    def end(self, code: grpc.StatusCode, details: str) -> None:
        """The call ends with this status (the broker refused it, or the connection broke)."""
        self._code, self._details = code, details
        metadata = grpc.aio.Metadata()
        self._replies.put_nowait(grpc.aio.AioRpcError(code, metadata, metadata, details))

    def done(self) -> bool:
        return self._code is not None

    def cancel(self) -> bool:
        if self._code is None:
            self._code = grpc.StatusCode.CANCELLED
        return True

    async def code(self) -> grpc.StatusCode | None:
        return self._code

    async def details(self) -> str:
        return self._details

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        return grpc.aio.Metadata()

    async def next_message(self) -> ws.ReportProgressRequest:
        return await soon(self.written.get())

    async def nothing_sent(self) -> bool:
        """Whether the stream sends nothing while the loop runs everything that is ready."""
        for _ in range(20):
            await asyncio.sleep(0)
        return self.written.empty()


class FakeStub:
    """The WorkerService stub, as far as the stream uses it: one new call per stream."""

    def __init__(self) -> None:
        self.calls: asyncio.Queue[FakeCall] = asyncio.Queue()

    def ReportProgress(self, *, wait_for_ready: bool | None = None) -> FakeCall:
        call = FakeCall(wait_for_ready)
        self.calls.put_nowait(call)
        return call

    async def next_call(self) -> FakeCall:
        return await soon(self.calls.get())


@dataclass
class Listener:
    """Records what the stream hands to the worker (the Jobs side of the seam)."""

    updates: list[tuple[Lease, ws.LeaseStatus]] = field(default_factory=list)
    outcomes: list[tuple[Lease | None, Report, ws.OutcomeResult]] = field(default_factory=list)
    signals: list[ws.Signal] = field(default_factory=list)

    def stream_update(self, lease: Lease, status: ws.LeaseStatus) -> None:
        self.updates.append((lease, status))

    def stream_outcome(self, lease: Lease | None, report: Report, result: ws.OutcomeResult) -> None:
        self.outcomes.append((lease, report, result))

    def stream_signal(self, signal: ws.Signal) -> None:
        self.signals.append(signal)

    def completed(self) -> list[str]:
        return [report.job_id for _, report, _ in self.outcomes]


def lease(job_id: str) -> Lease:
    job = ws.LeasedJob(queue="q", job_id=job_id, token=f"token-{job_id}", fence=1)
    return Lease(job, threaded=False, renew_at=0.0)


def completion(held: Lease) -> Report:
    return Report("complete", held.queue, held.job_id, held.token)


def ack(
    request: ws.ReportProgressRequest,
    *,
    statuses: int | None = None,
    results: int | None = None,
    unavailable: frozenset[str] = frozenset(),
) -> ws.ReportProgressResponse:
    """The acknowledgement of ``request``: a status per update and a result per outcome (or
    only the first ``statuses`` / ``results``), UNAVAILABLE for the jobs in ``unavailable``."""
    response = ws.ReportProgressResponse(seq=request.seq)
    for update in request.updates[:statuses]:
        status = response.leases.add(
            queue=update.queue, job_id=update.job_id, lease_expires_at_ms=1_000
        )
        if update.job_id in unavailable:
            status.error.code = UNAVAILABLE
    for outcome in request.outcomes[:results]:
        item = getattr(outcome, outcome.WhichOneof("kind"))
        result = response.outcomes.add(queue=item.queue, job_id=item.job_id)
        if item.job_id in unavailable:
            result.error.code = UNAVAILABLE
    return response


def outcome_ids(request: ws.ReportProgressRequest) -> list[str]:
    return [getattr(o, o.WhichOneof("kind")).job_id for o in request.outcomes]


@dataclass
class Harness:
    stub: FakeStub
    stream: WorkerStream
    listener: Listener
    call: FakeCall
    task: asyncio.Task[None]


async def open_stream(stub: FakeStub, stream: WorkerStream) -> FakeCall:
    """Take the stream's next call and acknowledge its first message (the hello)."""
    call = await stub.next_call()
    hello = await call.next_message()
    assert hello.worker_id == "worker-1"
    assert list(hello.queues) == ["q"]
    call.reply(ack(hello))
    await soon(stream.ready.wait())
    return call


@pytest.fixture
async def h(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    """A worker stream whose first call is open and acknowledged."""
    # Items are sent again after ITEM_RETRY_S; shortened so the tests need not wait 0.5 s.
    monkeypatch.setattr(_worker_stream, "ITEM_RETRY_S", 0.01)
    stub, listener = FakeStub(), Listener()
    stream = WorkerStream(stub, "worker-1", ["q"], 30_000, listener)  # type: ignore[arg-type]
    task = stream.start()
    call = await open_stream(stub, stream)
    yield Harness(stub, stream, listener, call, task)
    await stream.close(0.0)


async def test_reports_leave_together_and_their_answers_reach_the_worker(h: Harness) -> None:
    a, b, c = lease("a"), lease("b"), lease("c")
    h.stream.outcome(a, completion(a))
    h.stream.outcome(b, completion(b))
    h.stream.progress(c, 50.0, None)
    h.stream.log(c, "line 1")
    h.stream.log(c, "line 2")
    message = await h.call.next_message()
    assert outcome_ids(message) == ["a", "b"]
    assert [(u.job_id, u.percent, list(u.log_lines)) for u in message.updates] == [
        ("c", 50.0, ["line 1", "line 2"])
    ]
    assert message.updates[0].token == "token-c"
    assert message.updates[0].lease_ms == 30_000
    assert c.renew_at > 0  # an update renews the lease: the next renewal moves on
    assert not h.stream.idle
    h.call.reply(ack(message))
    await until(lambda: h.stream.idle)
    assert h.listener.completed() == ["a", "b"]
    assert [(held, status.lease_expires_at_ms) for held, status in h.listener.updates] == [
        (c, 1_000)
    ]


async def test_an_acknowledgement_with_fewer_results_sends_the_others_again(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A reply that answers fewer items than the message carried (a broker bug, or a newer
    broker) must not lose the rest: they are sent again, and a warning says so."""
    leases = [lease(name) for name in "abc"]
    for held in leases:
        h.stream.outcome(held, completion(held))
    renewed = [lease("r1"), lease("r2")]
    for held in renewed:
        h.stream.renew(held)
    first = await h.call.next_message()
    assert outcome_ids(first) == ["a", "b", "c"]
    assert [u.job_id for u in first.updates] == ["r1", "r2"]

    with caplog.at_level(logging.WARNING, logger="jobbroker.worker"):
        h.call.reply(ack(first, statuses=1, results=1))
        again = await h.call.next_message()
    assert outcome_ids(again) == ["b", "c"]
    assert [u.job_id for u in again.updates] == ["r2"]
    assert any(
        "1 of its 2 lease updates and 1 of its 3 outcomes" in record.getMessage()
        for record in caplog.records
    )
    assert h.listener.completed() == ["a"]

    h.call.reply(ack(again))
    await until(lambda: h.stream.idle)
    assert h.listener.completed() == ["a", "b", "c"]
    assert [held.job_id for held, _ in h.listener.updates] == ["r1", "r2"]


async def test_an_item_answered_unavailable_is_sent_again(h: Harness) -> None:
    a, b = lease("a"), lease("b")
    h.stream.outcome(a, completion(a))
    h.stream.outcome(b, completion(b))
    first = await h.call.next_message()
    h.call.reply(ack(first, unavailable=frozenset({"b"})))
    again = await h.call.next_message()
    assert outcome_ids(again) == ["b"]
    assert h.listener.completed() == ["a"]  # the UNAVAILABLE answer is not the outcome's
    h.call.reply(ack(again))
    await until(lambda: h.stream.idle)
    assert h.listener.completed() == ["a", "b"]


async def test_messages_not_acknowledged_are_sent_again_on_the_next_stream(h: Harness) -> None:
    a = lease("a")
    h.stream.outcome(a, completion(a))
    assert outcome_ids(await h.call.next_message()) == ["a"]
    h.call.end(grpc.StatusCode.UNAVAILABLE, "broker restarting")

    call = await h.stub.next_call()
    assert call.wait_for_ready  # after a failure: wait for the channel instead of failing fast
    hello = await call.next_message()
    assert hello.worker_id == "worker-1"
    again = await call.next_message()  # may go out before the hello is acknowledged
    assert outcome_ids(again) == ["a"]
    call.reply(ack(hello))
    call.reply(ack(again))
    await until(lambda: h.stream.idle)
    assert h.listener.completed() == ["a"]


async def test_a_permanent_refusal_ends_the_stream_with_its_error(h: Harness) -> None:
    h.call.end(grpc.StatusCode.UNAUTHENTICATED, "unknown token")
    with pytest.raises(Unauthenticated, match="unknown token"):
        await soon(h.task)
    assert h.stub.calls.empty()  # not reconnected


async def test_at_most_a_window_of_messages_waits_for_acknowledgement(h: Harness) -> None:
    sent = []
    for name in "abc":
        held = lease(name)
        h.stream.outcome(held, completion(held))
        if len(sent) < WINDOW:
            sent.append(await h.call.next_message())
    assert [outcome_ids(m) for m in sent] == [["a"], ["b"]]
    assert await h.call.nothing_sent()  # "c" waits: WINDOW messages are in flight
    h.call.reply(ack(sent[0]))
    third = await h.call.next_message()
    assert outcome_ids(third) == ["c"]


async def test_flush_returns_once_the_reports_are_acknowledged(h: Harness) -> None:
    a = lease("a")
    h.stream.log(a, "working")
    flushed = asyncio.create_task(h.stream.flush(a))
    message = await h.call.next_message()
    assert not flushed.done()
    h.call.reply(ack(message))
    await soon(flushed)


async def test_signals_reach_the_worker(h: Harness) -> None:
    signal = ws.Signal(
        queue="q", job_id="a", fence=1, type=ws.SIGNAL_TYPE_CANCEL_REQUESTED, reason="user"
    )
    h.call.reply(ws.ReportProgressResponse(signals=[signal]))
    await until(lambda: bool(h.listener.signals))
    assert h.listener.signals == [signal]


async def test_close_waits_until_the_outcomes_are_acknowledged(h: Harness) -> None:
    a = lease("a")
    h.stream.outcome(a, completion(a))
    closing = asyncio.create_task(h.stream.close(WITHIN))
    message = await h.call.next_message()
    assert not closing.done()
    h.call.reply(ack(message))
    await soon(closing)
    assert h.listener.completed() == ["a"]


async def test_a_stream_that_stops_acknowledging_is_replaced(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_worker_stream, "ACK_TIMEOUT_S", 0.05)
    a = lease("a")
    h.stream.outcome(a, completion(a))
    await h.call.next_message()  # never acknowledged
    call = await h.stub.next_call()
    await call.next_message()  # hello
    assert outcome_ids(await call.next_message()) == ["a"]
