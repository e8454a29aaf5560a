"""One worker's ReportProgress stream: renewals, progress, logs and outcomes in; acks and
signals out.

Messages are applied in the order they arrive, updates before outcomes, so a job's last
progress always lands before its completion; a message's ``lease`` (the next batch) comes last,
each queue's completions and leases in one script call (complete_lease.lua), and the jobs go
out in the message's acknowledgement. Signals come from each queue's signals stream: any
replica's Cancel or the reaper's lease expiry reaches this worker through one reader per queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, cast

from jobbroker import limits
from jobbroker.v1 import worker_service_pb2 as pb

from ...errors import BrokerError, InvalidArgument
from ...storage.contracts.leases import CompleteItem
from ...storage.store import ItemResult, Outcome, Store
from .. import access, streams, validation
from . import lease_request, outcomes
from .common import Parts

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


@dataclass(frozen=True, slots=True)
class _Ask:
    """A message's request for jobs, checked."""

    queues: list[str]
    max_jobs: int
    lease_ms: int


class WorkerSession:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.store: Store = parts.store
        self.worker_id = ""
        self.out: asyncio.Queue[Any] = asyncio.Queue()
        self._unsubscribe: dict[str, Callable[[], None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._busy = False
        self._draining = False

    def drain(self) -> None:
        """Finish and acknowledge the message being applied, read no more, then end."""
        self._draining = True
        if not self._busy and self._reader is not None:
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
            if not (self._draining and reader.cancelled()):
                reader.result()  # re-raise what ended the reader
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            for unsubscribe in self._unsubscribe.values():
                unsubscribe()

    async def _read(self, requests: AsyncIterator[pb.ReportProgressRequest]) -> None:
        async for request in requests:
            self._busy = True
            try:
                await self._apply(request)
            finally:
                self._busy = False
            if self._draining:
                return

    async def _apply(self, request: pb.ReportProgressRequest) -> None:
        if not self.worker_id:
            if not request.worker_id:
                raise InvalidArgument("worker_id", "is required on the first message")
            if not request.queues:
                raise InvalidArgument("queues", "is required on the first message")
            self.worker_id = validation.job_id(request.worker_id, "worker_id")
        ask = self._ask(request.lease) if request.HasField("lease") else None
        for i, queue in enumerate(request.queues):
            await self._watch(validation.queue_name(queue, f"queues[{i}]"))
        response = pb.ReportProgressResponse(seq=request.seq)
        response.leases.extend(await self._updates(request.updates))
        merged = await self._outcomes(request.outcomes, response.outcomes, ask)
        if ask is not None:
            await self._lease(ask, merged, response)
        await self.parts.registry.streaming(self.worker_id, list(self._unsubscribe))
        self.out.put_nowait(response)

    async def _watch(self, queue: str) -> None:
        """Receive the queue's signals; while Redis is down, try again with the next message
        (the message's items then fail with UNAVAILABLE on their own)."""
        if queue in self._unsubscribe:
            return
        with contextlib.suppress(BrokerError):
            self._unsubscribe[queue] = await self.parts.hub.subscribe(
                queue,
                lambda eid, fields: self._signal(queue, fields),
                worker_id=self.worker_id,
                stream="signals",
            )

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

    async def _updates(self, updates: Any) -> list[pb.LeaseStatus]:
        statuses = [pb.LeaseStatus(queue=u.queue, job_id=u.job_id) for u in updates]
        groups: dict[str, list[int]] = defaultdict(list)
        durations: dict[int, int] = {}
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
            await self._watch(queue)
            groups[queue].append(i)
            durations[i] = update.lease_ms
        for queue, indexes in groups.items():
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
        return statuses

    def _ask(self, lease: pb.StreamLease) -> _Ask:
        """A message's request for jobs, checked before anything of the message is applied."""
        settings = self.parts.settings
        queues = lease_request.queues(lease.queue, lease.more_queues, "lease.")
        max_jobs, lease_ms = lease_request.amounts(
            lease.max_jobs, lease.lease_ms, settings, "lease."
        )
        return _Ask(queues, max_jobs, lease_ms)

    async def _lease(self, ask: _Ask, merged: _Merged, response: pb.ReportProgressResponse) -> None:
        """Lease for a message's ``lease`` from its queues in order, each queue's completions
        (held back by :meth:`_outcomes`) in the same script call; the jobs go in ``response``."""
        response.lease_answered = True
        store, results, into = self.store, response.outcomes, response.jobs
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
                    applied, jobs, _ = await lease_request.given_back_if_cancelled(
                        store,
                        queue,
                        store.complete_lease(
                            queue, items, self.worker_id, want, ask.lease_ms, tag, into
                        ),
                        lambda reply: reply[1],
                    )
                else:
                    applied = []
                    jobs, _ = await lease_request.given_back_if_cancelled(
                        store,
                        queue,
                        store.lease(queue, self.worker_id, want, ask.lease_ms, tag, into),
                        lambda reply: reply[0],
                    )
            except BrokerError as error:  # Redis down: the completions' error, no job
                applied, jobs = [ItemResult(error) for _ in items], []
            self._answer(entries, applied, results)
            if jobs:
                # Wake maintenance when the earliest lease or attempt timeout falls due.
                self.parts.maintenance.hint_at(queue, min(j.lease_expires_at_ms for j in jobs))

    async def _outcomes(self, reports: Any, answers: Any, ask: _Ask | None = None) -> _Merged:
        """Apply outcomes; their results are added to ``answers`` (the response's), in order.
        Completions of a queue the message also leases from are held back and returned, for
        :meth:`_lease` to apply with the leases."""
        add = answers.add
        results = [add() for _ in reports]
        settings = self.parts.settings
        groups: dict[tuple[type[outcomes.Report], str], list[tuple[int, Outcome]]] = defaultdict(
            list
        )
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
        merged: _Merged = {}
        for queue in ask.queues if ask is not None else ():
            held_back = groups.pop((outcomes.CompleteRequest, queue), None)
            if held_back:
                merged[queue] = held_back
        for (kind_type, queue), entries in groups.items():
            applied = await self._guarded(
                len(entries),
                outcomes.apply(
                    self.store, self.parts.maintenance, kind_type, queue, [e[1] for e in entries]
                ),
            )
            self._answer(entries, applied, answers)
        return merged

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
