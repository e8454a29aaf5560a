"""Single ``Add`` calls gathered into batch script calls (group commit).

An ``Add`` that finds no add.lua call of its queue running starts one at once, alone, so an
idle broker adds no latency. Adds that arrive while a call runs wait for it and then go
together in the next call (up to ``max_bulk_jobs``), each on its own: a conflicting custom id
fails only its own Add (add.lua's "each" mode), and a failed call (Redis down) fails every Add
of it with the same error, so nothing is acknowledged that is not stored. Many concurrent Adds
thus cost one script call and one Redis connection per batch instead of one each.
"""

from __future__ import annotations

import asyncio

from ..errors import BrokerError
from .contracts.jobs import AddJob
from .store import Store

Added = tuple[str, int, bool]
"""(job id, state, duplicate)."""
_Waiter = tuple[AddJob, asyncio.Future[Added]]


class AddBatcher:
    """Batches the single adds of each queue; one script call in flight per queue."""

    def __init__(self, store: Store, max_batch: int) -> None:
        self._store = store
        self._max_batch = max(1, max_batch)
        self._pending: dict[str, list[_Waiter]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def add(self, queue: str, job: AddJob) -> Added:
        """Add one validated job; raises the job's error."""
        future: asyncio.Future[Added] = asyncio.get_running_loop().create_future()
        pending = self._pending.get(queue)
        if pending is None:
            self._pending[queue] = [(job, future)]
            task = asyncio.create_task(self._drain(queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            pending.append((job, future))
        return await future

    async def _drain(self, queue: str) -> None:
        """Run batches until no add of the queue waits; `_pending[queue]` exists meanwhile, so
        adds arriving during a call join the next one."""
        try:
            while True:
                waiting = self._pending[queue]
                batch = [w for w in waiting[: self._max_batch] if not w[1].cancelled()]
                self._pending[queue] = waiting[self._max_batch :]
                if batch:
                    await self._run(queue, batch)
                if not self._pending[queue]:
                    return
        finally:
            leftover = self._pending.pop(queue, [])
            for _, future in leftover:  # only on an unexpected exit (cancellation)
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
