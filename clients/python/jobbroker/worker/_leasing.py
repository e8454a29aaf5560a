"""The leasing loop: ask for as many jobs as there are free slots, in batches.

One poller for all of the worker's queues: each Lease call names them all (``queue`` and
``more_queues``), and the broker fills the batch from them in the order given; the poller
rotates that order from call to call (round robin), so no queue starves another. A poller
waits until a good share of the slots is free (or a couple of milliseconds passed with some
free), then leases that many at once; while the queues have jobs, a second call may go out
before the first came back (``MAX_CALLS``). It always long-polls, holding the slots it asked
for: one call covers every queue, so an idle queue never keeps slots from a busy one, and a
worker on six queues makes as few calls per job as one on a single queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from .._transport import PERMANENT, RetryBackoff
from ..errors import from_rpc_error
from ..limits import MAX_LEASE_JOBS
from ..v1 import worker_service_pb2 as ws
from ._outcomes import release
from ._stream import WorkerStream

if TYPE_CHECKING:
    from ..v1.worker_service_pb2_grpc import WorkerServiceAsyncStub

log = logging.getLogger("jobbroker.worker")

BATCH_WAIT_S = 0.002
"""How long a poller waits for more slots to free up before leasing fewer."""
LEASE_DEADLINE_MARGIN_S = 10.0
"""A Lease call's deadline is its long-poll wait plus this, so a hung broker is noticed."""
MAX_CALLS = 2
"""Lease calls in flight per queue at most while it has jobs: when slots free up while a call
is out (handlers ending one by one), the next batch is asked for at once instead of after the
reply. A queue that ran dry (a reply with fewer jobs than asked) gets one call at a time.
Splitting the slots between two calls on purpose was tried and cost more CPU per job (twice
the calls) than the overlap won (bench/profiling.md)."""


@dataclass(slots=True)
class _PollState:
    """What the poller knows from its last replies."""

    queues: list[str]
    """The queues, in the order the next call names them."""
    dry: bool = False
    """The last reply had no job: the queue ran dry."""
    short: bool = False
    """The last reply had fewer jobs than asked: no second call while one is out."""
    failing: bool = False
    """The last call failed: back off before the next."""
    backoff: RetryBackoff = field(default_factory=RetryBackoff)


class Leasing:
    """The pollers of one worker and the count of its free slots."""

    def __init__(
        self,
        stub: WorkerServiceAsyncStub,
        stream: WorkerStream,
        queues: list[str],
        worker_id: str,
        concurrency: int,
        lease_ms: int,
        wait_ms: int,
        accept: Callable[[list[ws.LeasedJob]], None],
    ) -> None:
        self._stub = stub
        self._stream = stream
        self._queues = queues
        self._worker_id = worker_id
        self._lease_ms = lease_ms
        self._wait_ms = wait_ms
        self._accept = accept
        self.free_slots = concurrency
        self._batch = max(1, concurrency // 2)
        self._freed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.calls = self.leased = 0

    def start(self) -> list[asyncio.Task[None]]:
        self._tasks = [asyncio.create_task(self._poll(), name="jobbroker-lease")]
        return self._tasks

    def free_slot(self) -> None:
        """A slot came free (a job's outcome was acknowledged or dropped)."""
        self.free_slots += 1
        self._freed.set()

    def _unhold(self, count: int) -> None:
        self.free_slots += count
        self._freed.set()

    async def close(self) -> None:
        """Stop leasing (an open long-poll is cancelled: the broker keeps its jobs)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _capacity(self) -> None:
        ready = self._stream.ready
        while self.free_slots <= 0 or not ready.is_set():
            if not ready.is_set():
                await ready.wait()
                continue
            self._freed.clear()
            await self._freed.wait()
        if self.free_slots < self._batch:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BATCH_WAIT_S):
                    while self.free_slots < self._batch:
                        self._freed.clear()
                        await self._freed.wait()

    async def _poll(self) -> None:
        state = _PollState(list(self._queues))
        calls: set[asyncio.Task[None]] = set()
        try:
            while True:
                if calls and (len(calls) >= MAX_CALLS or state.short or state.failing):
                    done, _ = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        calls.discard(task)
                        task.result()  # a refusal for good ends the worker
                    continue
                if state.failing:
                    await asyncio.sleep(state.backoff.next_delay())
                await self._capacity()
                if calls and (state.short or state.failing):
                    continue  # a reply came meanwhile and says: one call at a time
                calls.add(asyncio.create_task(self._call(state)))
        finally:
            for task in calls:
                task.cancel()
            for task in calls:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _call(self, state: _PollState) -> None:
        """One Lease call for as many jobs as there are free slots; runs what it got."""
        want = min(self.free_slots, MAX_LEASE_JOBS)
        if want <= 0:
            return  # a call started just before took the slots; max_jobs 0 would lease one
        self.free_slots -= want
        first, *more = state.queues
        if more:  # round robin: the next call starts with the next queue
            state.queues = [*more, first]
        request = ws.LeaseRequest(
            queue=first,
            more_queues=more,
            worker_id=self._worker_id,
            max_jobs=want,
            wait_ms=self._wait_ms,
            lease_ms=self._lease_ms,
        )
        label = ", ".join(self._queues)
        try:
            reply = await self._stub.Lease(
                request, timeout=request.wait_ms / 1000 + LEASE_DEADLINE_MARGIN_S
            )
        except grpc.aio.AioRpcError as exc:
            self._unhold(want)
            self._failed(label, state, exc)
            return
        except BaseException:
            self._unhold(want)
            raise
        self.free_slots += want
        self._received(label, state, list(reply.jobs), want)

    def _failed(self, queue: str, state: _PollState, exc: grpc.aio.AioRpcError) -> None:
        """A Lease call failed: end the worker if retrying cannot help, else back off."""
        if exc.code() in PERMANENT:
            raise from_rpc_error(exc) from None
        level = logging.DEBUG if state.failing else logging.WARNING
        log.log(
            level,
            "worker %s: Lease on %s failed (%s: %s); retrying",
            self._worker_id,
            queue,
            exc.code().name,
            exc.details(),
            extra={"queue": queue, "worker_id": self._worker_id},
        )
        state.failing = True

    def _received(self, queue: str, state: _PollState, jobs: list[ws.LeasedJob], want: int) -> None:
        """Run the jobs a Lease call got (their slots are free again: take them now)."""
        if state.failing:
            log.info(
                "worker %s: leasing from %s again",
                self._worker_id,
                queue,
                extra={"queue": queue, "worker_id": self._worker_id},
            )
        state.failing = False
        state.backoff.reset()
        self.calls += 1
        self.leased += len(jobs)
        taken = min(len(jobs), max(0, self.free_slots))
        self.free_slots -= taken
        if taken:
            self._accept(jobs[:taken])
        for job in jobs[taken:]:  # a call's slots went to another call meanwhile
            self._stream.outcome(None, release(job.queue, job.job_id, job.token))
        if self.free_slots > 0:
            self._freed.set()  # slots this call held and did not fill: other calls'
        state.dry = not jobs
        state.short = len(jobs) < want
