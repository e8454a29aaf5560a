"""Single ``Add`` calls gathered into batch script calls (group commit).

An ``Add`` that finds fewer than ``MAX_IN_FLIGHT`` add.lua calls of its queue running starts
one at once, so an idle broker adds no latency and one slow call (a durable add waiting for a
replica) does not hold the queue's other adds. Adds that arrive while every slot runs wait for
one and then go together in the next call (up to ``max_bulk_jobs``), each on its own: a
conflicting custom id fails only its own Add (add.lua's "each" mode), and a failed call (Redis
down) fails every Add of it with the same error, so nothing is acknowledged that is not stored.
Many concurrent Adds thus cost one script call and one Redis connection per batch instead of
one each.
"""

from __future__ import annotations

import asyncio

from ..errors import BrokerError
from .contracts.jobs import AddJob
from .store import Store

Added = tuple[str, int, bool]
"""(job id, state, duplicate)."""
_Waiter = tuple[AddJob, asyncio.Future[Added]]

MAX_IN_FLIGHT = 2
"""Calls per queue in flight at once: a second one keeps adds flowing past a slow one. Each
extra slot splits the waiting adds into smaller batches, which costs CPU per job: with 4 slots
the broker spent about 25 % more CPU per add at 100 adds in flight, with 2 the same as with 1
(bench/quick_throughput.py --add)."""


class AddBatcher:
    """Batches the single adds of each queue; up to MAX_IN_FLIGHT script calls per queue."""

    def __init__(self, store: Store, max_batch: int) -> None:
        self._store = store
        self._max_batch = max(1, max_batch)
        self._pending: dict[str, list[_Waiter]] = {}
        self._running: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def add(self, queue: str, job: AddJob) -> Added:
        """Add one validated job; raises the job's error."""
        future: asyncio.Future[Added] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(queue, []).append((job, future))
        running = self._running.get(queue, 0)
        if running < MAX_IN_FLIGHT:
            self._running[queue] = running + 1
            task = asyncio.create_task(self._drain(queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self, queue: str) -> None:
        """Run batches until no add of the queue waits; adds arriving during a call join the
        next call of whichever slot is free first."""
        try:
            while True:
                waiting = self._pending.pop(queue, [])
                batch = [w for w in waiting[: self._max_batch] if not w[1].cancelled()]
                if len(waiting) > self._max_batch:
                    self._pending[queue] = waiting[self._max_batch :]
                if batch:
                    await self._run(queue, batch)
                elif queue not in self._pending:
                    return
        finally:
            left = self._running[queue] - 1
            if left:
                self._running[queue] = left
            else:
                del self._running[queue]
                for _, future in self._pending.pop(queue, []):
                    # Only on an unexpected exit (cancellation): no slot is left to send it.
                    if not future.done():
                        future.cancel()

    async def _run(self, queue: str, batch: list[_Waiter]) -> None:
        try:
            results = await self._store.add_each(queue, [job for job, _ in batch])
        except Exception as error:  # Redis down (UNAVAILABLE), or a bug: every add fails
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue  # the caller went away; the job is stored all the same
            if isinstance(result, BrokerError):
                future.set_exception(result)
            else:
                future.set_result(result)
