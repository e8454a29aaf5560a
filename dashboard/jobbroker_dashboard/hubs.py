"""Hubs: one broker event stream per queue (and token), shared by every open page.

A page that updates live subscribes to its queue's hub; the hub reads the queue's events
(WatchEvents) once and tells each subscriber that something changed. The subscriber then
refreshes through :class:`~jobbroker_dashboard.share.Shared`, so fifty pages on one queue cost
the broker one stream and one refresh call per change, not fifty.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from jobbroker import (
    AsyncClient,
    Event,
    EventType,
    JobBrokerError,
    PermissionDenied,
    Unauthenticated,
)

from .charts import MINUTE_MS, MinuteCounts

log = logging.getLogger("jobbroker.dashboard")

TIMELINE_JOBS = 10_000
"""Jobs whose recent events a hub remembers, for their pages' timelines (least recent dropped)."""
TIMELINE_EVENTS = 50
"""Events remembered per job (the newest)."""
RETRY_DELAY = 1.0
"""Seconds before a hub's stream is opened again after an error the client did not ride out."""


class Subscriber:
    """One open page: told when an event of its queue (or of its one job) arrives."""

    def __init__(self, job_id: str | None = None) -> None:
        self.job_id = job_id
        self.changed = asyncio.Event()
        self.error: JobBrokerError | None = None

    def notify(self, event: Event) -> None:
        if self.job_id is None or event.job_id == self.job_id:
            self.changed.set()

    def fail(self, error: JobBrokerError) -> None:
        """The broker refused the stream (token revoked, grants changed): the page says so."""
        self.error = error
        self.changed.set()


class QueueHub:
    """The events of one queue, read once with one client's token, for many subscribers."""

    def __init__(
        self, client: AsyncClient, queue: str, minutes: int, on_idle: Callable[[QueueHub], None]
    ) -> None:
        self.client = client
        self.queue = queue
        self.stats = MinuteCounts(minutes)
        self.subscribers: set[Subscriber] = set()
        self._minutes = minutes
        self._on_idle = on_idle
        self._task: asyncio.Task[None] | None = None
        self._last_id = ""
        self._timelines: OrderedDict[str, deque[Event]] = OrderedDict()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Start telling ``subscriber``; returns the function that stops it."""
        self.subscribers.add(subscriber)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

        def unsubscribe() -> None:
            self.subscribers.discard(subscriber)
            if not self.subscribers:
                self._on_idle(self)

        return unsubscribe

    async def _run(self) -> None:
        # From an hour back (the broker's ids are Redis-clock milliseconds), to fill the charts.
        start = self._last_id or f"{int(time.time() * 1000) - self._minutes * MINUTE_MS}-0"
        while True:
            try:
                async for event in self.client.watch_events(self.queue, after_event_id=start):
                    start = self._last_id = event.id or start
                    self.stats.add(event)
                    self._remember(event)
                    for subscriber in list(self.subscribers):
                        subscriber.notify(event)
            except (Unauthenticated, PermissionDenied) as exc:
                for subscriber in list(self.subscribers):
                    subscriber.fail(exc)
                return
            except JobBrokerError as exc:
                log.warning(
                    "events of queue %s: %s: %s; reading again", self.queue, exc.code.name, exc
                )
                await asyncio.sleep(RETRY_DELAY)

    def _remember(self, event: Event) -> None:
        # Progress is left out: a job streaming tokens would push its state changes out.
        if not event.job_id or event.type is EventType.PROGRESS:
            return
        events = self._timelines.get(event.job_id)
        if events is None:
            events = self._timelines[event.job_id] = deque(maxlen=TIMELINE_EVENTS)
            if len(self._timelines) > TIMELINE_JOBS:
                self._timelines.popitem(last=False)
        else:
            self._timelines.move_to_end(event.job_id)
        events.append(event)

    def timeline(self, job_id: str) -> list[Event]:
        """The job's events this hub has seen (from an hour back), oldest first."""
        return list(self._timelines.get(job_id, ()))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class Hubs:
    """The hubs in use, by client and queue. A hub with no subscriber left stops after
    ``linger`` seconds, so the charts keep their history while someone moves between pages."""

    def __init__(self, minutes: int, linger: float = 600.0) -> None:
        self.minutes = minutes
        self.linger = linger
        self._hubs: dict[tuple[int, str], QueueHub] = {}
        self._timers: dict[tuple[int, str], asyncio.TimerHandle] = {}

    def get(self, client: AsyncClient, queue: str) -> QueueHub:
        key = (id(client), queue)
        hub = self._hubs.get(key)
        if hub is None or hub.client is not client:
            hub = QueueHub(client, queue, self.minutes, self._idle)
            self._hubs[key] = hub
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        return hub

    def peek(self, client: AsyncClient, queue: str) -> QueueHub | None:
        """The hub if one runs (reading it starts nothing)."""
        hub = self._hubs.get((id(client), queue))
        return hub if hub is not None and hub.client is client else None

    def _idle(self, hub: QueueHub) -> None:
        key = (id(hub.client), hub.queue)
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(self.linger, self._expire, key, hub)

    def _expire(self, key: tuple[int, str], hub: QueueHub) -> None:
        self._timers.pop(key, None)
        if hub.subscribers or self._hubs.get(key) is not hub:
            return
        del self._hubs[key]
        asyncio.get_running_loop().create_task(hub.stop())

    @property
    def streams(self) -> int:
        """Broker streams open (one per hub running)."""
        return len(self._hubs)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        hubs = list(self._hubs.values())
        self._hubs.clear()
        for hub in hubs:
            await hub.stop()
