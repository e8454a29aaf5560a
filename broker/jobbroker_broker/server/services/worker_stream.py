"""One worker's ReportProgress stream: renewals, progress, logs and outcomes in; acks and
signals out.

Messages are applied in the order they arrive, updates before outcomes, so a job's last
progress always lands before its completion; a message's ``lease`` (the next batch) comes last,
each queue's completions and leases in one script call (complete_lease.lua), and the jobs go
out in the message's acknowledgement. Signals come from each queue's signals stream: any
replica's Cancel or the reaper's lease expiry reaches this worker through one reader per queue.

Messages are applied in a pipeline of up to :data:`MAX_APPLYING`, which keeps that order: a
message is checked as soon as it arrives, but its first store call waits until Redis answered
the calls of the message before it, and its acknowledgement waits for that message's. So while
Redis runs one message's script, the broker checks the next one and builds the last one's jobs
into its acknowledgement, instead of the two taking turns (bench/profiling.md). A message that
is refused (a bad ``lease``, a bad queue name) ends the stream once the messages before it
were acknowledged; the ones after it are not applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from jobbroker import limits
from jobbroker.v1 import worker_service_pb2 as pb

from ...errors import BrokerError, InvalidArgument
from ...storage.contracts.leases import CompleteItem
from ...storage.store import ItemResult, Outcome, Store
from .. import access, streams, validation
from . import lease_request, long_poll, outcomes
from .common import Parts

MAX_APPLYING = 4
"""Messages of one stream in hand at most (checked, waiting for their turn, or applying); the
stream is read no further until one is done."""

_LOST = pb.SIGNAL_TYPE_LEASE_LOST
_SIGNALS: dict[bytes, tuple[int, str]] = {
    b"cancel-requested": (pb.SIGNAL_TYPE_CANCEL_REQUESTED, ""),
    b"stalled": (_LOST, "STALLED"),
    b"timeout": (_LOST, "TIMEOUT"),
    b"cancelled": (_LOST, "CANCELLED"),
}
_DONE = object()

_Merged = dict[str, list[tuple[int, Outcome]]]
"""Completions held back per queue, to be applied with that queue's leases: (index, item)."""
_Groups = dict[tuple[type[outcomes.Report], str], list[tuple[int, Outcome]]]
"""Checked outcomes by kind and queue: (index, item)."""


@dataclass(frozen=True, slots=True)
class _Ask:
    """A message's request for jobs, checked."""

    queues: list[str]
    max_jobs: int
    lease_ms: int
    wait_ms: int = 0


@dataclass(slots=True)
class _Plan:
    """A message, checked: its store calls to make, and its acknowledgement so far (the
    answers of the items refused already)."""

    response: pb.ReportProgressResponse
    queues: list[str]
    """Its ``queues``, to receive the signals of."""
    updates: Any
    update_groups: dict[str, list[int]] = field(default_factory=dict)
    """Checked updates by queue (indexes)."""
    durations: dict[int, int] = field(default_factory=dict)
    """Each checked update's lease duration, by index."""
    outcome_groups: _Groups = field(default_factory=dict)
    merged: _Merged = field(default_factory=dict)
    ask: _Ask | None = None


class _Turn:
    """A message's place in its stream's order: each future is set True when the message got
    that far, False when it failed or was cancelled first (the messages after it then fail
    without applying anything)."""

    __slots__ = ("answered", "index", "stored")

    def __init__(self, loop: asyncio.AbstractEventLoop, index: int) -> None:
        self.index = index
        """The message's place in its stream (0, 1, 2...)."""
        self.stored: asyncio.Future[bool] = loop.create_future()
        """Redis answered its store calls: the next message's may start."""
        self.answered: asyncio.Future[bool] = loop.create_future()
        """Its acknowledgement is queued: the next message's may be."""

    def end(self, ok: bool) -> None:
        for future in (self.stored, self.answered):
            if not future.done():
                future.set_result(ok)


class _Abandoned(Exception):
    """A message before this one failed: the stream is ending, apply nothing."""


class WorkerSession:
    waits = True
    """Requests for jobs may wait (StreamLease.wait_ms); False answers them as a broker that
    predates waiting would (the tests of the workers' fallback to Lease calls)."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.store: Store = parts.store
        self.worker_id = ""
        self.out: asyncio.Queue[Any] = asyncio.Queue()
        self._unsubscribe: dict[str, Callable[[], None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._reading = False
        """The reader waits for a message (or for room for one): drain may cancel it."""
        self._draining = False
        self._failed = False
        self._waiter: asyncio.Task[None] | None = None
        """The request for jobs that waits (StreamLease.wait_ms), at most one."""
        self._wait_index = -1
        """The place in the stream of the message whose request waits."""
        self._wait_ready = asyncio.Event()
        """Wakes that request's long poll (set on ``end_wait``)."""
        self._ends_before = 0
        """Requests of messages before this place may not wait, and one that waits ends (a
        later message's ``end_wait``)."""

    def drain(self) -> None:
        """Finish and acknowledge the messages in hand, read no more, then end."""
        self._draining = True
        if self._reading and self._reader is not None:
            self._reader.cancel()

    async def run(
        self, requests: AsyncIterator[pb.ReportProgressRequest]
    ) -> AsyncIterator[pb.ReportProgressResponse]:
        reader = self._reader = asyncio.create_task(self._read(requests))
        reader.add_done_callback(lambda _: self.out.put_nowait(_DONE))
        if (stream := streams.current()) is not None:
            stream.drain = self.drain
        try:
            while True:
                item = await self.out.get()
                if item is _DONE:
                    break
                yield item
            reader.result()  # re-raise what ended the reader
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if (waiter := self._waiter) is not None:  # its jobs, if any, are given back
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await waiter
            for unsubscribe in self._unsubscribe.values():
                unsubscribe()

    async def _read(self, requests: AsyncIterator[pb.ReportProgressRequest]) -> None:
        applying: deque[asyncio.Task[None]] = deque()
        loop = asyncio.get_running_loop()
        before: _Turn | None = None
        index = 0
        try:
            self._reading = True
            try:
                async for request in requests:
                    if not self.worker_id:
                        self._hello(request)
                    turn = _Turn(loop, index)
                    index += 1
                    task = asyncio.create_task(self._apply(request, before, turn))
                    task.add_done_callback(self._applied)
                    applying.append(task)
                    before = turn
                    while len(applying) >= MAX_APPLYING:
                        await asyncio.wait((applying[0],))
                        applying.popleft().result()
                    if self._draining:
                        break
            except asyncio.CancelledError:
                if not (self._draining or self._failed):
                    raise
                if (reader := asyncio.current_task()) is not None:
                    reader.uncancel()  # a stop to reading (drain, a failed message), not to us
            finally:
                self._reading = False
            while applying:  # in order: the first failure is the one raised
                await applying[0]
                applying.popleft()
        finally:
            for task in applying:
                task.cancel()

    def _applied(self, task: asyncio.Task[None]) -> None:
        """A message failed: read no more (the reader raises its error in order)."""
        if task.cancelled() or task.exception() is None:
            return
        self._failed = True
        if self._reading and self._reader is not None:
            self._reader.cancel()

    def _hello(self, request: pb.ReportProgressRequest) -> None:
        if not request.worker_id:
            raise InvalidArgument("worker_id", "is required on the first message")
        if not request.queues:
            raise InvalidArgument("queues", "is required on the first message")
        self.worker_id = validation.job_id(request.worker_id, "worker_id")

    async def _apply(
        self, request: pb.ReportProgressRequest, before: _Turn | None, turn: _Turn
    ) -> None:
        ok = False
        if request.end_wait:
            self._end_wait(turn.index)
        try:
            try:
                plan = self._check(request)
            except BrokerError:
                if before is not None:  # the messages before it are acknowledged first
                    await before.answered
                raise
            if before is not None and not await before.stored:
                raise _Abandoned
            for queue in plan.queues:
                await self._watch(queue)
            await self._updates(plan)
            await self._outcomes(plan)
            if plan.ask is not None:
                held = await self._lease(plan.ask, plan.merged, plan.response, turn)
                if self._may_wait(plan.ask, plan.response, turn.index):
                    plan.response.lease_waiting = True
                    self._wait_index = turn.index
                    self._waiter = asyncio.create_task(
                        self._wait_for_jobs(request.seq, plan.ask, held, turn)
                    )
            if not turn.stored.done():
                turn.stored.set_result(True)
            await self.parts.registry.streaming(self.worker_id, list(self._unsubscribe))
            if before is not None and not await before.answered:
                raise _Abandoned
            self.out.put_nowait(plan.response)
            ok = True
        finally:
            turn.end(ok)

    def _end_wait(self, index: int) -> None:
        """``end_wait`` in the message at ``index``: the request of an earlier message that
        waits answers at once, with what it leased so far or nothing, and one that is about to
        wait (its message still applying) does not."""
        self._ends_before = max(self._ends_before, index)
        if self._waiter is not None:
            self._wait_ready.set()

    @staticmethod
    async def _replied(turn: _Turn) -> None:
        """Redis answered a message's script call: the next message's may go out now, while
        this one's reply is decoded (at its first lease call; see the module's docstring)."""
        if not turn.stored.done():
            turn.stored.set_result(True)
            await asyncio.sleep(0)  # let the next message's call be sent first

    def _check(self, request: pb.ReportProgressRequest) -> _Plan:
        """Check a message; its refused items are answered in the plan's response already."""
        ask = self._ask(request.lease) if request.HasField("lease") else None
        queues = [validation.queue_name(q, f"queues[{i}]") for i, q in enumerate(request.queues)]
        plan = _Plan(pb.ReportProgressResponse(seq=request.seq), queues, request.updates, ask=ask)
        self._check_updates(plan)
        self._check_outcomes(request.outcomes, plan)
        return plan

    async def _watch(self, queue: str) -> None:
        """Receive the queue's signals; while Redis is down, try again with the next message
        (the message's items then fail with UNAVAILABLE on their own)."""
        if queue in self._unsubscribe:
            return
        with contextlib.suppress(BrokerError):
            unsubscribe = await self.parts.hub.subscribe(
                queue,
                lambda eid, fields: self._signal(queue, fields),
                worker_id=self.worker_id,
                stream="signals",
            )
            if queue in self._unsubscribe:  # another message in hand subscribed meanwhile
                unsubscribe()
            else:
                self._unsubscribe[queue] = unsubscribe

    def _signal(self, queue: str, fields: dict[bytes, bytes]) -> None:
        signal = _SIGNALS.get(fields.get(b"k", b""))
        if signal is None:
            return
        self.out.put_nowait(
            pb.ReportProgressResponse(
                signals=[
                    pb.Signal(
                        queue=queue,
                        job_id=fields.get(b"j", b"").decode(),
                        fence=int(fields.get(b"f") or 0),
                        type=signal[0],  # type: ignore[arg-type]
                        reason=signal[1],
                    )
                ]
            )
        )

    def _check_updates(self, plan: _Plan) -> None:
        updates = plan.updates
        add = plan.response.leases.add
        statuses = [add(queue=u.queue, job_id=u.job_id) for u in updates]
        settings = self.parts.settings
        for i, update in enumerate(updates):
            try:
                queue = validation.queue_name(update.queue, f"updates[{i}].queue")
                validation.job_id(update.job_id, f"updates[{i}].job_id")
                outcomes.token(update.token, f"updates[{i}].token")
                access.check_lease(update.token, f"updates[{i}].token")
                if update.lease_ms:
                    validation.bounded(
                        update.lease_ms,
                        f"updates[{i}].lease_ms",
                        0,
                        limits.MIN_LEASE_MS,
                        limits.MAX_LEASE_MS,
                    )
                if update.HasField("percent") and not 0 <= update.percent <= 100:
                    raise InvalidArgument(f"updates[{i}].percent", "must be between 0 and 100")
                if update.HasField("value"):
                    validation.payload(update.value, f"updates[{i}].value", settings)
                for line in update.log_lines:
                    if len(line.encode()) > settings.max_log_line_bytes:
                        raise InvalidArgument(
                            f"updates[{i}].log_lines",
                            f"a line is over {settings.max_log_line_bytes} bytes",
                        )
            except BrokerError as error:
                statuses[i].error.CopyFrom(outcomes.item_error(error))
                continue
            plan.update_groups.setdefault(queue, []).append(i)
            plan.durations[i] = update.lease_ms

    async def _updates(self, plan: _Plan) -> None:
        updates, durations, statuses = plan.updates, plan.durations, plan.response.leases
        for queue, indexes in plan.update_groups.items():
            await self._watch(queue)
            results = await self._guarded(
                len(indexes),
                self.store.report(
                    queue, [updates[i] for i in indexes], [durations[i] for i in indexes]
                ),
            )
            for i, result in zip(indexes, results, strict=True):
                if result.error is not None:
                    statuses[i].error.CopyFrom(outcomes.item_error(result.error))
                else:
                    statuses[i].lease_expires_at_ms = result.value

    def _ask(self, lease: pb.StreamLease) -> _Ask:
        """A message's request for jobs, checked before anything of the message is applied."""
        settings = self.parts.settings
        queues = lease_request.queues(lease.queue, lease.more_queues, "lease.")
        max_jobs, lease_ms = lease_request.amounts(
            lease.max_jobs, lease.lease_ms, settings, "lease."
        )
        wait_ms = validation.bounded(lease.wait_ms, "lease.wait_ms", 0, 0, limits.MAX_WAIT_MS)
        return _Ask(queues, max_jobs, lease_ms, wait_ms)

    async def _lease(
        self, ask: _Ask, merged: _Merged, response: pb.ReportProgressResponse, turn: _Turn | None
    ) -> dict[str, int]:
        """Lease for a message's ``lease`` from its queues in order, each queue's completions
        (held back by :meth:`_check_outcomes`) in the same script call; the jobs go in
        ``response``. The next message's store calls may start once Redis answered the first
        of these calls: it cannot name a job these lease, nor report on one these complete
        (a worker reports nothing on a job after its outcome). Returns, per queue leased from,
        what held its leasing back (as Store.lease's)."""
        response.lease_answered = True
        response.lease_can_wait = self.waits
        store, results, into = self.store, response.outcomes, response.jobs
        replied = functools.partial(self._replied, turn) if turn is not None else None
        held: dict[str, int] = {}
        for queue in ask.queues:
            await self._watch(queue)
            entries = merged.get(queue, [])
            items = cast("list[CompleteItem]", [entry[1] for entry in entries])
            want = ask.max_jobs - len(into)
            if want <= 0 or self.parts.streams.closing:  # shutting down: no more leases
                if items:
                    self._answer(
                        entries,
                        await self._guarded(len(items), store.complete(queue, items)),
                        results,
                    )
                continue
            await self.parts.registry.leased(queue, self.worker_id)
            tag = access.lease_tag()
            try:
                if items:
                    applied, jobs, held[queue] = await lease_request.given_back_if_cancelled(
                        store,
                        queue,
                        store.complete_lease(
                            queue, items, self.worker_id, want, ask.lease_ms, tag, into, replied
                        ),
                        lambda reply: reply[1],
                    )
                else:
                    applied = []
                    jobs, held[queue] = await lease_request.given_back_if_cancelled(
                        store,
                        queue,
                        store.lease(queue, self.worker_id, want, ask.lease_ms, tag, into, replied),
                        lambda reply: reply[0],
                    )
            except BrokerError as error:  # Redis down: the completions' error, no job
                applied, jobs = [ItemResult(error) for _ in items], []
            self._answer(entries, applied, results)
            if jobs:
                # Wake maintenance when the earliest lease or attempt timeout falls due.
                self.parts.maintenance.hint_at(queue, min(j.lease_expires_at_ms for j in jobs))
        return held

    def _may_wait(self, ask: _Ask, response: pb.ReportProgressResponse, index: int) -> bool:
        """Whether a request for jobs that got none waits for some (one per stream at a time,
        none after a later message's ``end_wait``, none while the broker shuts down)."""
        return (
            self.waits
            and ask.wait_ms > 0
            and not response.jobs
            and self._waiter is None
            and index >= self._ends_before
            and not self.parts.streams.closing
        )

    async def _wait_for_jobs(self, seq: int, ask: _Ask, held: dict[str, int], turn: _Turn) -> None:
        """Wait for jobs for the request of message ``seq`` (acknowledged as waiting), as a
        long-polling Lease call does, and push them in one response after that
        acknowledgement (none: the wait ran out or the broker is shutting down)."""
        pushed = pb.ReportProgressResponse(lease_seq=seq)
        try:

            async def lease_again() -> tuple[int, dict[str, int]]:
                held = await self._lease(ask, {}, pushed, None)
                return len(pushed.jobs), held

            await long_poll.long_poll(
                self.parts,
                ask.queues,
                ask.wait_ms / 1000,
                held,
                lease_again,
                bool,
                self._wait_ready,
                lambda: self._wait_index < self._ends_before,
            )
            pushed.lease_answered = pushed.lease_can_wait = True
            if await turn.answered:
                self.out.put_nowait(pushed)
        finally:
            self._waiter = None

    def _check_outcomes(self, reports: Any, plan: _Plan) -> None:
        """Check outcomes; the refused ones are answered in the plan's response, in order.
        Completions of a queue the message also leases from are held back (``plan.merged``),
        for :meth:`_lease` to apply with the leases."""
        add = plan.response.outcomes.add
        results = [add() for _ in reports]
        settings = self.parts.settings
        groups: _Groups = defaultdict(list)
        for i, wrapper in enumerate(reports):
            kind = wrapper.WhichOneof("kind")
            if kind is None:
                error: BrokerError = InvalidArgument(
                    f"outcomes[{i}]", "has no complete, fail or release"
                )
                results[i].error.CopyFrom(outcomes.item_error(error))
                continue
            report = getattr(wrapper, kind)
            results[i].queue, results[i].job_id = report.queue, report.job_id
            try:
                queue, item = outcomes.check(report, f"outcomes[{i}].{kind}", settings)
            except BrokerError as error:
                results[i].error.CopyFrom(outcomes.item_error(error))
                continue
            groups[(type(report), queue)].append((i, item))
        for queue in plan.ask.queues if plan.ask is not None else ():
            held_back = groups.pop((outcomes.CompleteRequest, queue), None)
            if held_back:
                plan.merged[queue] = held_back
        plan.outcome_groups = groups

    async def _outcomes(self, plan: _Plan) -> None:
        """Apply the outcomes not held back, a script call per kind and queue."""
        answers = plan.response.outcomes
        for (kind_type, queue), entries in plan.outcome_groups.items():
            applied = await self._guarded(
                len(entries),
                outcomes.apply(
                    self.store, self.parts.maintenance, kind_type, queue, [e[1] for e in entries]
                ),
            )
            self._answer(entries, applied, answers)

    @staticmethod
    def _answer(
        entries: list[tuple[int, Outcome]], applied: list[ItemResult], answers: Any
    ) -> None:
        """Write applied outcomes' results into the response's (``answers``, by index)."""
        for (i, _), result in zip(entries, applied, strict=True):
            if result.error is not None:
                answers[i].error.CopyFrom(outcomes.item_error(result.error))
            else:
                answers[i].state = result.state

    @staticmethod
    async def _guarded(count: int, call: Any) -> list[ItemResult]:
        """A store call whose failure (Redis down) becomes each item's error, not the stream's."""
        try:
            return list(await call)
        except BrokerError as error:
            return [ItemResult(error) for _ in range(count)]
