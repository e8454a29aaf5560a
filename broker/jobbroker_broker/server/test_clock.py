"""The test clock of an in-process test broker (``Settings.test_clock``): move queues' time
forward and have the broker do at once what fell due.

Each queue has its own clock (a key in its hash tag, read by every script's now_ms()), so
tests that share one Redis and run in parallel each move only their own queues' time.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..loops.maintenance import Maintenance
from ..loops.scheduler import ScheduleLoop
from ..storage.clock import advance_clock
from ..storage.store import Store


class QueueClocks:
    """Moves the time of queues of a broker started with ``Settings.test_clock``."""

    def __init__(self, store: Store, maintenance: Maintenance, schedules: ScheduleLoop) -> None:
        if not store.settings.test_clock:
            raise RuntimeError("the broker runs no test clock (Settings.test_clock is off)")
        self.store = store
        self.maintenance = maintenance
        self.schedules = schedules

    async def advance(self, queues: Sequence[str], ms: int) -> None:
        """Move the time of `queues` forward by `ms`, then run what fell due before returning:
        delayed jobs and retries after a backoff become waiting, expired leases are reaped,
        jobs past their lifespan fail, and due schedules add their jobs."""
        if ms < 0:
            raise ValueError(f"time only moves forward (got {ms} ms)")
        names = list(dict.fromkeys(queues))
        for queue in names:
            await advance_clock(self.store, queue, ms)
        await self.maintenance.run_now(names)
        await self.schedules.run_now()

    async def now_ms(self, queue: str) -> int:
        """`queue`'s "now", in ms since the epoch, as its scripts see it."""
        (now,) = await self.store.now_ms([queue])
        return now
