"""Hubs: one broker event stream per queue (and token), shared by every open page.

A page that updates live subscribes to its queue's hub; the hub reads the queue's events
(WatchEvents) once and tells each subscriber that something changed. The subscriber then
refreshes through :class:`~jobbroker_dashboard.share.Shared`, so fifty pages on one queue cost
the broker one stream and one refresh call per change, not fifty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from jobbroker import (
    AsyncClient,
    Event,
    EventType,
    JobBrokerError,
    LimitExceeded,
    Unavailable,
)

from .charts import MINUTE_MS, MinuteCounts

log = logging.getLogger("jobbroker.dashboard")

TIMELINE_JOBS = 10_000
"""Jobs whose recent events a hub remembers, for their pages' timelines (least recent dropped)."""
TIMELINE_EVENTS = 50
"""Events remembered per job (the newest)."""
HISTORY_IDLE = 2.0
"""Seconds without an event after which the replay of a queue's last hour is taken as done
(the replay reads the kept events in batches; a pause this long means it caught up)."""
RETRY_DELAY = 1.0
"""Seconds before a hub's stream is opened again after an error the client did not ride out."""


class Subscriber:
    """One open page: told when an event of its queue (or of its one job) arrives."""

    def __init__(self, job_id: str | None = None) -> None:
        self.job_id = job_id
        self.changed = asyncio.Event()
        self.error: JobBrokerError | None = None

    def notify(self, job_ids: set[str]) -> None:
        """Events of these jobs (and maybe of the queue itself) arrived."""
        if self.job_id is None or self.job_id in job_ids:
            self.changed.set()

    def fail(self, error: JobBrokerError) -> None:
        """The broker refused the stream (token revoked, grants changed): the page says so."""
        self.error = error
        self.changed.set()


class QueueHub:
    """The events of one queue, read once with one client's token, for many subscribers."""

    def __init__(
        self,
        client: AsyncClient,
        queue: str,
        minutes: int,
        interval: float,
        on_idle: Callable[[QueueHub], None],
    ) -> None:
        self.client = client
        self.interval = interval
        self.queue = queue
        self.stats = MinuteCounts(minutes)
        self.subscribers: set[Subscriber] = set()
        self._minutes = minutes
        self._on_idle = on_idle
        self._task: asyncio.Task[None] | None = None
        self._last_id = ""
        self.seq = 0
        """Updates sent so far: what a live page's reads are keyed by, so that the pages told
        of one update share each answer."""
        self._changed_jobs: set[str] = set()
        self._dirty = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None
        self._timelines: OrderedDict[str, deque[Event]] = OrderedDict()
        self._first_live: tuple[int, int] | None = None
        self._history: asyncio.Task[None] | None = None

    def subscribe(self, subscriber: Subscriber, history: bool = False) -> Callable[[], None]:
        """Start telling ``subscriber``; returns the function that stops it. ``history``: the
        subscriber shows charts or timelines, so the queue's last hour is read once too."""
        self.subscribers.add(subscriber)
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            if self._ticker is not None:
                self._ticker.cancel()
            self._task = loop.create_task(self._run())
            self._ticker = loop.create_task(self._tick())
        if history and self._history is None:
            self._history = loop.create_task(self._backfill())

        def unsubscribe() -> None:
            self.subscribers.discard(subscriber)
            if not self.subscribers:
                self._on_idle(self)

        return unsubscribe

    async def _run(self) -> None:
        """The live events, from now on (the client resumes after the last one by itself)."""
        start = self._last_id
        while True:
            try:
                async for event in self.client.watch_events(self.queue, after_event_id=start):
                    start = self._last_id = event.id or start
                    if self._first_live is None:
                        self._first_live = _position(event.id)
                    self.stats.add(event)
                    self._remember(event)
                    self._changed_jobs.add(event.job_id)
                    self._dirty.set()
            except (Unavailable, LimitExceeded) as exc:
                # The client rides out outages by itself; this is a stream that stayed down
                # past its retries, or one the broker ended for falling behind: read again.
                log.warning(
                    "events of queue %s: %s: %s; reading again", self.queue, exc.code.name, exc
                )
                await asyncio.sleep(RETRY_DELAY)
            except JobBrokerError as exc:
                # Refused (token revoked, grants changed, a bad queue name): the pages say so.
                for subscriber in list(self.subscribers):
                    subscriber.fail(exc)
                return

    async def _tick(self) -> None:
        """Tell the subscribers, at most once per ``interval``, of the events since last time:
        fifty pages told at once read once (through Shared), not once per event each."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            jobs, self._changed_jobs = self._changed_jobs, set()
            self.seq += 1
            for subscriber in list(self.subscribers):
                subscriber.notify(jobs)
            await asyncio.sleep(self.interval)

    async def _backfill(self) -> None:
        """Count the events of the last hour that came before the live ones, for the charts
        and timelines (the broker's event ids are Redis-clock milliseconds)."""
        begun = int(time.time() * 1000)
        start = f"{begun - self._minutes * MINUTE_MS}-0"
        older: list[Event] = []
        stream = self.client.watch_events(self.queue, after_event_id=start)
        try:
            async with contextlib.aclosing(stream):
                while True:
                    event = await asyncio.wait_for(anext(stream), HISTORY_IDLE)
                    live = self._first_live
                    if (live is not None and _position(event.id) >= live) or (
                        event.timestamp is not None and event.timestamp.timestamp() * 1000 >= begun
                    ):
                        break  # the live stream has this one
                    older.append(event)
        except (TimeoutError, StopAsyncIteration, JobBrokerError):
            pass  # caught up; or refused, and the live stream says why
        for event in older:
            self.stats.add(event)
        newer, self._timelines = self._timelines, OrderedDict()
        for event in older:
            self._remember(event)
        for events in newer.values():
            for event in events:
                self._remember(event)
        self._changed_jobs.update(event.job_id for event in older)
        self._changed_jobs.add("")
        self._dirty.set()

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

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        tasks = [t for t in (self._task, self._history, self._ticker) if t is not None]
        self._task = self._history = self._ticker = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _position(event_id: str) -> tuple[int, int]:
    """An event id (``<ms>-<seq>``) as a comparable pair."""
    ms, _, seq = event_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


class Hubs:
    """The hubs in use, by client and queue. A hub with no subscriber left stops after
    ``linger`` seconds, so the charts keep their history while someone moves between pages."""

    def __init__(self, minutes: int, interval: float, linger: float = 600.0) -> None:
        self.minutes = minutes
        self.interval = interval
        self.linger = linger
        self._hubs: dict[tuple[int, str], QueueHub] = {}
        self._timers: dict[tuple[int, str], asyncio.TimerHandle] = {}

    def get(self, client: AsyncClient, queue: str) -> QueueHub:
        key = (id(client), queue)
        hub = self._hubs.get(key)
        if hub is None or hub.client is not client:
            hub = QueueHub(client, queue, self.minutes, self.interval, self._idle)
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

    def streams(self, queue: str | None = None) -> int:
        """Broker event streams this dashboard holds (of ``queue``, or of every queue)."""
        return sum(
            1 for (_, name), hub in self._hubs.items() if queue in (None, name) and hub.running
        )

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        hubs = list(self._hubs.values())
        self._hubs.clear()
        for hub in hubs:
            await hub.stop()
