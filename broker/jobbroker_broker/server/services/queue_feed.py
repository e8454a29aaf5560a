"""QueueService's event feed (WatchEvents) and worker registry (ListWorkers).

WatchEvents subscribes to the replica's fan-out first, then replays the stream from the resume
point until it has caught up, then sends live events newer than the last one sent: an event is
either replayed or live, never lost between the two, never sent twice.
"""

from __future__ import annotations

import asyncio
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
"""Live events a watcher may have waiting; a watcher this far behind is ended (it resumes from
the last event id it received)."""


class _Overflow(LimitExceeded):
    def __init__(self) -> None:
        super().__init__(
            str(MAX_BACKLOG),
            "the watcher fell too far behind the queue's events; resume after the last "
            "event_id received",
        )


class QueueFeed:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.store = parts.store
        self.registry = parts.registry

    async def watch(self, request: pb.WatchEventsRequest) -> AsyncIterator[pb.WatchEventsResponse]:
        queue = validation.queue_name(request.queue)
        after = validation.event_id(request.after_event_id) if request.after_event_id else ""
        live: asyncio.Queue[Entry | None] = asyncio.Queue()

        def on_event(event_id: bytes, fields: dict[bytes, bytes]) -> None:
            if live.qsize() < MAX_BACKLOG:
                live.put_nowait((event_id, fields))
            elif live.qsize() == MAX_BACKLOG:
                live.put_nowait(None)  # ends the watch once the backlog before it is sent

        unsubscribe = await self.parts.hub.subscribe(queue, on_event)
        try:
            seen = codec.stream_id_key(after) if after else (0, 0)
            trimmed = False
            if after:
                position, first = after, True
                while True:
                    rows, lost = await self.store.read_events(queue, position, REPLAY_BATCH)
                    if first:
                        trimmed, first = lost, False
                    elif lost:
                        raise _Overflow()  # trimmed while replaying: events would be skipped
                    for event_id, fields in rows:
                        yield pb.WatchEventsResponse(
                            event=codec.event(queue, event_id, fields),
                            resume_point_trimmed=trimmed,
                        )
                        trimmed = False
                        position = event_id.decode()
                    if len(rows) < REPLAY_BATCH:
                        break
                seen = max(seen, codec.stream_id_key(position))
            while True:
                entry = await live.get()
                if entry is None:
                    raise _Overflow()
                event_id, fields = entry
                key = codec.stream_id_key(event_id)
                if key <= seen:
                    continue  # already replayed
                seen = key
                yield pb.WatchEventsResponse(
                    event=codec.event(queue, event_id, fields), resume_point_trimmed=trimmed
                )
                trimmed = False
        finally:
            unsubscribe()

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
