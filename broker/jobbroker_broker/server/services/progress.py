"""One StreamProgress call: the job's snapshot (or a replay from the caller's resume point),
then its live events, until its final event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from jobbroker.v1 import job_pb2, job_service_pb2

from ...errors import NotFound, job_not_found
from ...storage import codec
from ...storage.store import Store, iterate_events

Response = job_service_pb2.StreamProgressResponse
Entry = tuple[bytes, dict[bytes, bytes]]


class ProgressFeed:
    """Subscribe :meth:`push` to the job's events first, then send :meth:`catch_up`, then
    :meth:`live` unless :attr:`ended`: an event is then either in the snapshot (or the replay
    up to it) or sent live, never lost between the two."""

    def __init__(self, store: Store, queue: str, job_id: str, after: str) -> None:
        self.store = store
        self.queue = queue
        self.job_id = job_id
        self.after = after
        """The event id the caller resumes after; '' for a fresh start."""
        self.ended = False
        """The job's final event (or a terminal snapshot) was sent."""
        self.position = ""
        """The newest event the caller has seen, directly or through the snapshot."""
        self._live: asyncio.Queue[Entry] = asyncio.Queue()

    def push(self, event_id: bytes, fields: dict[bytes, bytes]) -> None:
        """The event hub's callback."""
        self._live.put_nowait((event_id, fields))

    async def catch_up(self) -> AsyncIterator[Response]:
        """The snapshot, or the job's events after the resume point while the stream still
        holds them all."""
        job, position = await self._start_point()
        trimmed = False
        if self.after:
            _, trimmed = await self.store.read_events(self.queue, self.after, 0)
        if self.after and not trimmed:
            async for response in self._replay(job, position):
                yield response
            return
        if job is None:
            raise job_not_found(self.queue, self.job_id)
        yield Response(snapshot=job, resume_point_trimmed=trimmed, snapshot_event_id=position)
        self.ended = job.state in codec.TERMINAL_STATES
        self.position = position

    async def live(self) -> AsyncIterator[Response]:
        """Every event after :attr:`position`, until the final one."""
        seen = codec.stream_id_key(self.position) if self.position else (0, 0)
        while True:
            event_id, fields = await self._live.get()
            if codec.stream_id_key(event_id) <= seen:
                continue
            event = codec.event(self.queue, event_id, fields)
            yield Response(event=event)
            if event.final:
                self.ended = True
                return

    async def _start_point(self) -> tuple[job_pb2.Job | None, str]:
        """The snapshot and the id of the newest event it includes, read atomically; a job
        removed while a resuming caller was away is None (its events may still say so)."""
        try:
            return await self.store.snapshot(self.queue, self.job_id)
        except NotFound:
            if not self.after:
                raise
            return None, await self.store.newest_event_id(self.queue)

    async def _replay(self, job: job_pb2.Job | None, position: str) -> AsyncIterator[Response]:
        after = self.after
        async for event in iterate_events(self.store, self.queue, after, position or after):
            if event.job_id == self.job_id:
                yield Response(event=event)
                if event.final:
                    self.ended = True
                    return
        if job is None:
            raise job_not_found(self.queue, self.job_id)
        if job.state in codec.TERMINAL_STATES:
            self.ended = True  # its final event came before the resume point
            return
        self.position = max(position or after, after, key=codec.stream_id_key)
