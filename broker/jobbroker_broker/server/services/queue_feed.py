"""QueueService's event feed (WatchEvents) and worker registry (ListWorkers).

WatchEvents subscribes to the replica's fan-out first, tells the caller where it starts when
asked (``send_start``: a resume point before the first event), then replays the stream from the
resume point until it has caught up, then sends live events newer than the last one sent: an
event is either replayed or live, never lost between the two, never sent twice. A watcher that falls
behind is not cut off: past MAX_BACKLOG live events the broker keeps only their ids and reads
them back from the stream when the watcher gets there; what trimming took in between is told
with the next event (``resume_point_trimmed`` and ``events_lost``), never lost silently.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

from jobbroker.v1 import queue_service_pb2 as pb

from ...errors import LimitExceeded
from ...storage import codec
from .. import validation
from .common import Parts

Entry = tuple[bytes, dict[bytes, bytes]]

REPLAY_BATCH = 1_000
"""Events one replay read returns at most."""

MAX_BACKLOG = 10_000
"""Live events a watcher may have waiting with their fields; past that the broker keeps only
their ids and, once the watcher gets to them, reads them back from the queue's stream."""

EMPTY_STREAM_START = "0-0"
"""Where a watch of a queue with no event yet starts: before any event the queue will have."""

MAX_UNSENT = 10 * MAX_BACKLOG
"""Events a watcher may be behind at all (fields or ids); a watcher this far behind is ended
(the client resumes after the last event id it received)."""


class _Overflow(LimitExceeded):
    def __init__(self) -> None:
        super().__init__(
            "watch_backlog",
            f"the watcher fell more than {MAX_UNSENT} events behind the queue's events; resume "
            "after the last event_id received",
        )


class _Unsent:
    """The live events a watcher has not been sent, oldest first: the first MAX_BACKLOG with
    their fields, then only their ids (memory stays bounded per watcher, and the ids count what
    trimming takes before the watcher reads them back)."""

    def __init__(self) -> None:
        self.entries: collections.deque[tuple[tuple[int, int], Entry | None]] = collections.deque()
        self.overflowed = False
        self._more = asyncio.Event()

    def put(self, event_id: bytes, fields: dict[bytes, bytes]) -> None:
        if self.overflowed:
            return
        if len(self.entries) >= MAX_UNSENT:
            self.overflowed = True
        key = codec.stream_id_key(event_id)
        kept = (event_id, fields) if len(self.entries) < MAX_BACKLOG else None
        self.entries.append((key, kept))
        self._more.set()

    async def next(self) -> tuple[tuple[int, int], Entry | None]:
        """The oldest unsent event, left in place (``skip`` removes it)."""
        while not self.entries:
            if self.overflowed:
                raise _Overflow()
            self._more.clear()
            await self._more.wait()
        return self.entries[0]

    def skip(self, seen: tuple[int, int]) -> None:
        """Forget the events up to ``seen`` (sent)."""
        while self.entries and self.entries[0][0] <= seen:
            self.entries.popleft()

    def between(self, after: tuple[int, int], before: tuple[int, int]) -> int:
        """How many unsent events have an id in (after, before)."""
        return sum(1 for key, _ in self.entries if after < key < before)


class QueueFeed:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.store = parts.store
        self.registry = parts.registry

    async def watch(self, request: pb.WatchEventsRequest) -> AsyncIterator[pb.WatchEventsResponse]:
        queue = validation.queue_name(request.queue)
        after = validation.event_id(request.after_event_id) if request.after_event_id else ""
        unsent = _Unsent()
        unsubscribe = await self.parts.hub.subscribe(queue, unsent.put)
        try:
            seen = codec.stream_id_key(after) if after else (0, 0)
            if request.send_start:
                # Events from now on are those after the newest one now: told to the client
                # first, so that it has a resume point before any event comes.
                start = after or await self.store.newest_event_id(queue) or EMPTY_STREAM_START
                seen = codec.stream_id_key(start)
                yield pb.WatchEventsResponse(start_event_id=start)
            if after:
                async for response, key in self._replay(queue, after, unsent, first=True):
                    seen = key
                    yield response
            while True:
                key, entry = await unsent.next()
                if key <= seen:
                    unsent.skip(seen)  # already replayed
                    continue
                if entry is None:
                    # Kept by id only: read it, and everything after it, back from the stream.
                    position = f"{seen[0]}-{seen[1]}"
                    async for response, replayed in self._replay(queue, position, unsent):
                        seen = replayed
                        yield response
                    unsent.skip(seen)
                    continue
                event_id, fields = entry
                seen = key
                unsent.skip(seen)
                yield pb.WatchEventsResponse(event=codec.event(queue, event_id, fields))
        finally:
            unsubscribe()

    async def _replay(
        self, queue: str, position: str, unsent: _Unsent, *, first: bool = False
    ) -> AsyncIterator[tuple[pb.WatchEventsResponse, tuple[int, int]]]:
        """The events after ``position`` read from the queue's stream until caught up, each with
        its id key. Where events were trimmed before being sent, the next message says so
        (``resume_point_trimmed``) and how many (``events_lost``: the unsent live events
        trimmed; 0 on the first replay, whose resume point the client chose and whose events
        before this watch began the broker never saw)."""
        while True:
            rows, lost = await self.store.read_events(queue, position, REPLAY_BATCH)
            gap, count = lost, 0
            if lost and rows and not first:
                count = unsent.between(
                    codec.stream_id_key(position), codec.stream_id_key(rows[0][0])
                )
            first = False
            for event_id, fields in rows:
                key = codec.stream_id_key(event_id)
                yield (
                    pb.WatchEventsResponse(
                        event=codec.event(queue, event_id, fields),
                        resume_point_trimmed=gap,
                        events_lost=count,
                    ),
                    key,
                )
                gap, count = False, 0
                position = event_id.decode()
            if len(rows) < REPLAY_BATCH:
                return

    async def list_workers(self, request: pb.ListWorkersRequest) -> pb.ListWorkersResponse:
        queue = validation.queue_name(request.queue)
        workers = await self.registry.list(queue)
        return pb.ListWorkersResponse(
            workers=[
                pb.WorkerInfo(
                    worker_id=w.worker_id,
                    host=w.host,
                    queues=w.queues,
                    active_jobs=w.active_jobs,
                    last_seen_ms=w.last_seen_ms,
                )
                for w in workers
            ]
        )
