"""The schedule loop: add the jobs of repeatable jobs when they fall due.

Every replica runs it over every queue that has schedules. It sleeps until the earliest next run
it knows of, and at most ``maintenance_interval`` seconds so it learns of schedules upserted on
other replicas. Replicas racing on one occurrence are harmless: ``fire_schedule.lua`` adds it
only for the caller that still sees the schedule's version and next run (compare-and-set).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..storage.schedule_store import ScheduleStore
from ..storage.store import Store
from . import Loop

log = logging.getLogger(__name__)

QUEUE_REFRESH_S = 5.0
CHUNK = 200  # queues per pipeline
BATCH = 100  # due schedules fired per queue and pass
RUN_NOW_PASSES = 100  # bounds run_now while more is due at once


class ScheduleLoop(Loop):
    name = "schedules"

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.schedules = ScheduleStore(store)
        self.store = store
        self.interval = store.settings.maintenance_interval
        self._queues: list[str] = []

    async def run_once(self, refresh: bool = True) -> float:
        """One pass: fire what is due; returns the seconds until the earliest next run known
        (0 when more is due now)."""
        # A queue's first schedule (upserted on any replica) changes the count: pick it up now.
        if refresh or await self.schedules.scheduled_count() != len(self._queues):
            self._queues = await self.schedules.scheduled_queues()
        wait = self.interval
        for start in range(0, len(self._queues), CHUNK):
            if self._stopping:
                break
            chunk = self._queues[start : start + CHUNK]
            heads = await self.schedules.heads(chunk, BATCH)
            nows = await self.store.now_ms(chunk)
            for queue, head, now in zip(chunk, heads, nows, strict=True):
                due = [key for key, at in head if at <= now]
                if due:
                    following = await self.schedules.fire(queue, due, now)
                    if following is None:  # lost a race: read what the winner stored
                        wait = 0.0
                    elif following:
                        wait = min(wait, max(0.0, (following - now) / 1000))
                if len(due) == BATCH:
                    wait = 0.0
                elif len(due) < len(head):
                    wait = min(wait, max(0.0, (head[len(due)][1] - now) / 1000))
        return wait

    async def run_now(self) -> None:
        """Fire what is due now (the test clock moved time forward), then let the loop go on."""
        for _ in range(RUN_NOW_PASSES):
            if await self.run_once() > 0 or self._stopping:
                break
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        refreshed = -QUEUE_REFRESH_S
        while not self._stopping:
            try:
                refresh = loop.time() - refreshed >= QUEUE_REFRESH_S
                if refresh:
                    refreshed = loop.time()
                wait = await self.run_once(refresh)
            except Exception as exc:  # Redis down: keep trying, health reports it
                log.warning("schedule pass failed: %s", exc)
                wait = self.interval
            if self._stopping:
                break
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
