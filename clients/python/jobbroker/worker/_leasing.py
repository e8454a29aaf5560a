"""The leasing loop: ask for as many jobs as there are free slots, in batches.

While the worker's queues have jobs, the next batch is asked for on the worker's stream, in
the message that carries the outcomes of the last one (``ReportProgressRequest.lease``): the
broker completes and leases in one script call and sends the jobs in the acknowledgement. Each
such request asks for at most a batch (``concurrency`` jobs), for the free slots and for up to
one batch more, kept in hand and started the moment a slot frees: the next batch is on its way
while this one runs, and two messages in flight keep the worker, the broker and Redis busy at
once instead of in turns. A job in hand waits at most about one handler's run; one that waited
a third of its lease (handlers slower than that) is given back, and the worker stops leasing
ahead.

A request on the stream for free slots only that finds no job waits for one (``wait_ms``, as a
long-polling Lease call): the broker acknowledges the message at once and sends the jobs later
on the stream, so a worker whose queues run dry keeps leasing there, one request at a time,
without a unary call per batch. Once the queues ran dry (an answer short of what was asked, or
jobs that came to a waiting request), the worker asks for its free slots only and holds nothing
in hand, until an answer comes back full.

A broker older than such waits answers at once; then, when an answer brings fewer jobs than
asked (the queues ran dry, or a pause, concurrency or rate limit holds them back), the poller
takes over: a unary Lease call that long-polls for the free slots, one call for all of the
worker's queues (it names them all, ``queue`` and ``more_queues``; the broker fills the batch
from them in the order given, and the order rotates from call to call so no queue starves
another). Once a call comes back full, the stream takes over again. A broker that does not
answer requests on the stream at all (one older than them) is leased from with Lease calls only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from .._transport import PERMANENT, RetryBackoff
from ..errors import from_rpc_error
from ..limits import MAX_LEASE_JOBS
from ..v1 import worker_service_pb2 as ws
from ._outcomes import release
from ._stream import LeaseAsk, WorkerStream

if TYPE_CHECKING:
    from ..v1.worker_service_pb2_grpc import WorkerServiceAsyncStub

log = logging.getLogger("jobbroker.worker")

BATCH_WAIT_S = 0.002
"""How long the poller waits for more slots to free up before leasing fewer."""
LEASE_DEADLINE_MARGIN_S = 10.0
"""A Lease call's deadline is its long-poll wait plus this, so a hung broker is noticed."""
MAX_CALLS = 2
"""Lease calls in flight at most while the queues have jobs, with a broker that does not answer
requests on the stream: when slots free up while a call is out (handlers ending one by one),
the next batch is asked for at once instead of after the reply. Queues that ran dry (a reply
with fewer jobs than asked) get one call at a time."""


@dataclass(slots=True)
class _PollState:
    """What the poller knows from its last replies."""

    short: bool = False
    """The last reply had fewer jobs than asked: no second call while one is out."""
    failing: bool = False
    """The last call failed: back off before the next."""
    backoff: RetryBackoff = field(default_factory=RetryBackoff)


class Leasing:
    """The leasing of one worker: its slots, the jobs in hand, the poller and the requests for
    jobs on the stream (a :class:`~._stream.LeaseSource`)."""

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
        self._order = list(queues)
        self._worker_id = worker_id
        self._concurrency = concurrency
        self._lease_ms = lease_ms
        self._wait_ms = wait_ms
        self._accept = accept
        self.running = 0
        """Slots taken by a job (from its start until its slot is freed)."""
        self._asked = 0
        """Jobs asked for and not answered yet (Lease calls and stream messages)."""
        self._hand: deque[tuple[float, ws.LeasedJob]] = deque()
        """Jobs leased ahead, waiting for a slot, with the loop time they came."""
        self._ahead = concurrency
        """Jobs the worker may hold in hand at most: one batch (0 once leasing ahead stopped)."""
        self._batch = min(concurrency, MAX_LEASE_JOBS)
        """Most jobs one request on the stream asks for."""
        self._poll_batch = max(1, concurrency // 2)
        self._in_hand_s = lease_ms / 3000
        """How long a job may wait in hand: a third of its lease, when the worker would renew
        it if it ran."""
        self._hand_timer: asyncio.TimerHandle | None = None
        self._on_stream = True
        """Ask on the stream: the last answer was full (the queues have jobs), or the broker
        lets a request wait there; else the poller asks (Lease calls)."""
        self._stream_answers = True
        """The broker answers requests on the stream (False: one that predates them)."""
        self._stream_waits = False
        """The broker lets a request on the stream wait for jobs (``lease_can_wait``)."""
        self._dry = False
        """The last answer had fewer jobs than asked: ask for the idle slots only, no batch in
        hand (a job leased ahead would wait in hand for a slot while other workers idle)."""
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._freed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.calls = self.asks = self.leased = 0
        stream.lease_source = self

    def start(self) -> list[asyncio.Task[None]]:
        self._tasks = [asyncio.create_task(self._poll(), name="jobbroker-lease")]
        return self._tasks

    @property
    def _idle(self) -> int:
        """Slots neither running a job nor promised to an answer on its way."""
        return self._concurrency - self.running - self._asked

    @property
    def _room(self) -> int:
        """Jobs the worker may still ask for: its slots and one batch in hand, less what it
        runs, holds and asked for."""
        return self._concurrency + self._ahead - self.running - len(self._hand) - self._asked

    def free_slot(self) -> None:
        """A slot came free (a handler returned, or its lease ended): start a job in hand."""
        self.running -= 1
        if self._hand:
            _, job = self._hand.popleft()
            self.running += 1
            self._accept([job])
            return
        if self._poller_may_ask():
            self._freed.set()
        elif self.lease_wanted():
            self._stream.wake()

    async def close(self) -> None:
        """Stop leasing (an open long-poll is cancelled: the broker keeps its jobs) and give
        back the jobs in hand; jobs that still come are given back too."""
        self._closed = True
        self._stream.end_wait()  # the broker would lease the jobs given back to us again
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._give_back_hand(0.0)

    def _next_queues(self) -> tuple[str, list[str]]:
        """The queues in the order the next request names them (round robin)."""
        first, *more = self._order
        if more:
            self._order = [*more, first]
        return first, more

    # --- on the stream (a LeaseSource) ---------------------------------------------------

    @property
    def _wanted(self) -> int:
        """Jobs the next request on the stream may ask for: the idle slots once the queues ran
        dry, else the slots and one batch in hand."""
        return min(self._idle if self._dry else self._room, self._batch)

    def lease_wanted(self) -> bool:
        return (
            self._on_stream
            and self._stream_answers
            and not self._closed
            and not self._stream.waiting_for_jobs
            and (self._wanted > 0 if self._dry else self._room >= self._batch)
        )

    def lease_ask(self) -> LeaseAsk | None:
        if (
            not (self._on_stream and self._stream_answers)
            or self._closed
            or self._stream.waiting_for_jobs
        ):
            return None
        want = self._wanted
        if want <= 0:
            return None
        # Only a request for idle slots may wait: jobs that trickle in to one that asks ahead
        # would wait in hand for a slot.
        wait_ms = self._wait_ms if want <= self._idle else 0
        self._asked += want
        first, more = self._next_queues()
        request = ws.StreamLease(
            queue=first, more_queues=more, max_jobs=want, lease_ms=self._lease_ms, wait_ms=wait_ms
        )
        return LeaseAsk(request, want)

    def lease_waiting(self, ask: LeaseAsk) -> None:
        self._stream_waits = True

    def lease_answered(self, ask: LeaseAsk, response: ws.ReportProgressResponse) -> None:
        want = ask.asked
        self._asked -= want
        if not response.lease_answered:
            log.info(
                "worker %s: the broker does not lease on the stream; leasing with Lease calls",
                self._worker_id,
            )
            self._stream_answers = False
            self._on_stream = False
            self._freed.set()
            return
        self.asks += 1
        self._stream_waits = response.lease_can_wait
        self._got(list(response.jobs), want, waited=bool(response.lease_seq))

    def lease_unanswered(self, ask: LeaseAsk) -> None:
        self._asked -= ask.asked
        # The broker may have leased jobs for it: they go back to waiting when their leases
        # run out. Ask on the next stream if the broker lets requests wait there, else lease
        # with the poller until a reply is full again.
        self._on_stream = self._stream_waits
        if not self._on_stream:
            self._freed.set()

    # --- jobs that came ------------------------------------------------------------------

    def _got(self, jobs: list[ws.LeasedJob], want: int, waited: bool = False) -> None:
        """Run the jobs an answer brought (as many as slots are free; the others wait in
        hand) and choose where the next are asked for: on the stream after a full answer or
        when the broker lets requests wait there, else by the poller. Jobs that came to a
        request that waited came to a dry queue, however many."""
        self.leased += len(jobs)
        if self._closed:
            for job in jobs:
                self._stream.outcome(None, release(job.queue, job.job_id, job.token))
            return
        start = min(len(jobs), max(0, self._concurrency - self.running))
        if start:
            self.running += start
            self._accept(jobs[:start])
        kept = min(len(jobs), start + max(0, self._ahead - len(self._hand)))
        if start < kept:
            now = self._loop.time()
            self._hand.extend((now, job) for job in jobs[start:kept])
            if self._hand_timer is None:
                self._hand_timer = self._loop.call_later(self._in_hand_s, self._hand_waited)
        for job in jobs[kept:]:  # more than the worker may hold (leasing ahead stopped)
            self._stream.outcome(None, release(job.queue, job.job_id, job.token))
        self._dry = waited or len(jobs) < want
        self._on_stream = self._stream_answers and (not self._dry or self._stream_waits)
        if self._on_stream:
            if self.lease_wanted():
                self._stream.wake()
        else:
            self._freed.set()  # the poller's turn

    def _hand_waited(self) -> None:
        """Jobs waited in hand a third of their lease: handlers run longer than that, so give
        them back and lease no more ahead (the worker would hold jobs other workers could run,
        and their leases would run out in hand)."""
        self._hand_timer = None
        if not self._hand:
            return
        oldest = self._hand[0][0]
        if self._loop.time() - oldest < self._in_hand_s:
            self._hand_timer = self._loop.call_at(oldest + self._in_hand_s, self._hand_waited)
            return
        log.info(
            "worker %s: jobs waited in hand for a third of their lease; giving them back and "
            "leasing no more ahead of free slots",
            self._worker_id,
        )
        self._ahead = 0
        self._give_back_hand(self._in_hand_s)

    def _give_back_hand(self, waited_s: float) -> None:
        """Release the jobs that waited in hand at least ``waited_s`` seconds."""
        now = self._loop.time()
        while self._hand and now - self._hand[0][0] >= waited_s:
            _, job = self._hand.popleft()
            self._stream.outcome(None, release(job.queue, job.job_id, job.token))
        if not self._hand and self._hand_timer is not None:
            self._hand_timer.cancel()
            self._hand_timer = None

    # --- the poller: Lease calls ---------------------------------------------------------

    def _poller_may_ask(self) -> bool:
        return not (self._on_stream and self._stream_answers)

    async def _capacity(self) -> None:
        """Wait until the poller may lease, and for a good share of idle slots."""
        ready = self._stream.ready
        while self._idle <= 0 or not ready.is_set() or not self._poller_may_ask():
            if not ready.is_set():
                await ready.wait()
                continue
            self._freed.clear()
            await self._freed.wait()
        if self._idle < self._poll_batch:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BATCH_WAIT_S):
                    while self._idle < self._poll_batch:
                        self._freed.clear()
                        await self._freed.wait()

    async def _poll(self) -> None:
        state = _PollState()
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
        """One Lease call for as many jobs as there are idle slots; runs what it got."""
        want = min(self._idle, MAX_LEASE_JOBS)
        if want <= 0 or not self._poller_may_ask():
            return  # an answer meanwhile took the slots, or the stream leases now
        self._asked += want
        first, more = self._next_queues()
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
            self._asked -= want
            self._freed.set()
            self._failed(label, state, exc)
            return
        except BaseException:
            self._asked -= want
            raise
        self._asked -= want
        if state.failing:
            log.info(
                "worker %s: leasing from %s again",
                self._worker_id,
                label,
                extra={"queue": label, "worker_id": self._worker_id},
            )
        state.failing = False
        state.backoff.reset()
        self.calls += 1
        jobs = list(reply.jobs)
        state.short = len(jobs) < want
        self._got(jobs, want)

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
