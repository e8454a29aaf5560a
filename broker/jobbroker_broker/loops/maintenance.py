"""The maintenance loop: promote delayed jobs, end expired leases, expire old jobs.

Every replica runs it over every known queue; the scripts are atomic, so replicas racing on
the same queue is harmless. A queue is visited when something in it is due (the scripts return
the next due time) and at least every ``maintenance_interval`` seconds while anything is
scheduled in it (delayed jobs, leases, lifespans), else every ``IDLE_FACTOR`` intervals; adds,
leases and failures on this replica hint earlier due times so delays and timeouts fire on time,
and a replica that adds a job always schedules its queue itself. The queues due in one pass
go to Redis in pipelined chunks, so a pass over thousands of idle queues costs a few round
trips, not one per queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from ..storage.store import Store
from . import Loop

log = logging.getLogger(__name__)

QUEUE_REFRESH_S = 5.0
CHUNK = 200  # queues per pipeline
IDLE_FACTOR = 30  # a queue with nothing scheduled is visited this many intervals apart
RUN_NOW_PASSES = 100  # bounds run_now on a queue that keeps having due work


class Maintenance(Loop):
    name = "maintenance"

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.interval = store.settings.maintenance_interval
        self.idle_interval = self.interval * IDLE_FACTOR
        self._due: dict[str, float] = {}
        self._loop = asyncio.get_running_loop()
        # Redis clock minus loop clock, in seconds: per queue (a test clock moves each queue's
        # time on its own), and the last one read, for queues not visited yet.
        self._redis_offset: float | None = None
        self._offsets: dict[str, float] = {}

    def hint(self, queue: str, in_ms: int) -> None:
        """Something in `queue` becomes due in `in_ms` milliseconds."""
        at = self._loop.time() + max(0, in_ms) / 1000
        if at < self._due.get(queue, float("inf")):
            self._due[queue] = at
            self._wake.set()

    def hint_at(self, queue: str, redis_ms: int) -> None:
        """Something in `queue` becomes due at `redis_ms` on the Redis clock (the queue's
        "now", as its scripts see it)."""
        offset = self._offsets.get(queue, self._redis_offset)
        if offset is None:
            self.hint(queue, 0)
        else:
            self.hint(queue, int(redis_ms - (self._loop.time() + offset) * 1000))

    async def run_now(self, queues: list[str]) -> None:
        """Maintain `queues` now, until nothing in them is due (the test clock moved their
        time forward); the loop then visits them as usual."""
        for _ in range(RUN_NOW_PASSES):
            waits = await self._visit(queues)
            queues = [queue for queue, wait in zip(queues, waits, strict=True) if wait == 0]
            if not queues:
                break
        self._wake.set()

    async def _visit(self, queues: list[str]) -> list[int]:
        """One pass over `queues`; schedules their next visits and returns their waits."""
        waits, nows = await self.store.maintain(queues)
        for queue, wait_ms, now_ms in zip(queues, waits, nows, strict=True):
            self._redis_offset = self._offsets[queue] = now_ms / 1000 - self._loop.time()
            # Nothing scheduled: only adds on other replicas could change that, and those
            # replicas schedule the queue themselves.
            after = self.idle_interval if wait_ms < 0 else min(wait_ms / 1000, self.interval)
            self._due[queue] = self._loop.time() + after
        if len(self._offsets) > 100_000:
            self._offsets.clear()
        return waits

    async def _refresh_queues(self) -> None:
        # Queues found here were not hinted by this replica: spread their first visits over
        # the idle interval instead of visiting thousands at once.
        now = self._loop.time()
        for queue in await self.store.known_queues():
            if queue not in self._due:
                self._due[queue] = now + random.random() * self.idle_interval

    async def _run(self) -> None:
        refreshed = -QUEUE_REFRESH_S
        while not self._stopping:
            try:
                now = self._loop.time()
                if now - refreshed >= QUEUE_REFRESH_S:
                    await self._refresh_queues()
                    refreshed = now
                while not self._stopping:
                    # The most overdue first, a chunk at a time, so a queue that falls due
                    # during a long pass does not wait for the pass to end.
                    now = self._loop.time()
                    due = [(at, queue) for queue, at in self._due.items() if at <= now]
                    if not due:
                        break
                    await self._visit([queue for _, queue in sorted(due)[:CHUNK]])
            except Exception as exc:  # Redis down: keep trying, health reports it
                log.warning("maintenance pass failed: %s", exc)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._wake.wait()
                continue
            self._wake.clear()
            next_at = min(self._due.values(), default=self._loop.time() + self.interval)
            timeout = max(0.0, min(next_at - self._loop.time(), self.interval))
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
