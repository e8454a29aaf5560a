"""Per-replica event fan-out: one reader per queue stream, any number of local subscribers.

Two streams per queue are read this way: ``events`` (everything, for progress and event
subscribers and idle Lease calls) and ``signals`` (only what a worker must be told: cancel
requested, lease lost), so worker streams never parse a busy queue's whole event flow.

A reader runs while its queue has subscribers. Subscribers are plain callbacks called with each
raw stream entry, in stream order; they must not block (they set an event or fill a queue).
``subscribe`` returns only once the reader has a position, so a snapshot taken after it can
never be older than the reader's next event: nothing falls between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ..errors import Unavailable
from ..storage.connection import Client
from ..storage.keys import QueueKeys
from ..storage.store import Store, redis_errors

log = logging.getLogger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]
Callback = Callable[[bytes, dict[bytes, bytes]], None]

BLOCK_MS = 1_000
BATCH = 1_000


class _Reader:
    def __init__(self, hub: EventHub, queue: str, stream: str) -> None:
        self.hub = hub
        self.queue = queue
        self.id = (queue, stream)
        self.key = QueueKeys(queue).key(stream)
        self.by_job: dict[bytes, set[Callback]] = {}
        self.by_worker: dict[bytes, set[Callback]] = {}
        self.everything: set[Callback] = set()
        self.position = b"$"
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def empty(self) -> bool:
        return not (self.by_job or self.by_worker or self.everything)

    def dispatch(self, event_id: bytes, fields: dict[bytes, bytes]) -> None:
        targets = list(self.everything)
        job_subs = self.by_job.get(fields.get(b"j", b""))
        if job_subs:
            targets.extend(job_subs)
        worker = fields.get(b"w")
        if worker:
            worker_subs = self.by_worker.get(worker)
            if worker_subs:
                targets.extend(worker_subs)
        for callback in targets:
            try:
                callback(event_id, fields)
            except Exception:
                log.exception(
                    "event subscriber of queue %s failed", self.queue, extra={"queue": self.queue}
                )

    async def run(self) -> None:
        delay = 0.05
        while not self.empty() and not self.hub.closing:
            try:
                if not self.ready.is_set():
                    with redis_errors():
                        last = await self.hub.blocking.xrevrange(self.key, count=1)
                    self.position = last[0][0] if last else b"0-0"  # type: ignore[assignment]
                    self.ready.set()
                with redis_errors():
                    rows: Any = await self.hub.blocking.xread(
                        {self.key: self.position}, block=BLOCK_MS, count=BATCH
                    )
                delay = 0.05
            except Exception as exc:
                log.warning(
                    "event reader of queue %s: %s", self.queue, exc, extra={"queue": self.queue}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            for _key, entries in rows:
                for event_id, fields in entries:
                    self.position = event_id
                    self.dispatch(event_id, fields)
        self.hub.readers.pop(self.id, None)


class EventHub:
    """Fans the events of each queue out to this replica's subscribers."""

    def __init__(self, store: Store, blocking: Client) -> None:
        self.store = store
        self.blocking = blocking
        settings = store.settings
        self.start_timeout = settings.redis_connect_timeout + settings.redis_timeout
        self.readers: dict[tuple[str, str], _Reader] = {}
        self.closing = False
        self._added: dict[str, set[Callable[[], None]]] = {}

    def on_added(self, queue: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` whenever this replica adds waiting jobs to `queue` (see
        :meth:`added`), until the returned function is called."""
        callbacks = self._added.setdefault(queue, set())
        callbacks.add(callback)

        def unsubscribe() -> None:
            callbacks.discard(callback)
            if not callbacks and self._added.get(queue) is callbacks:
                del self._added[queue]

        return unsubscribe

    def added(self, queue: str) -> None:
        """This replica just added waiting jobs to `queue`: wake its local long-polls now,
        without waiting for the 'added' event to come back through the queue's stream (which
        still wakes the long-polls of the other replicas)."""
        for callback in list(self._added.get(queue, ())):
            callback()

    def _reader(self, queue: str, stream: str) -> _Reader:
        reader = self.readers.get((queue, stream))
        if reader is None:
            reader = self.readers[(queue, stream)] = _Reader(self, queue, stream)
        return reader

    async def _start(self, reader: _Reader) -> None:
        if reader.task is None or reader.task.done():
            if self.readers.get(reader.id) is not reader:
                self.readers[reader.id] = reader
            reader.task = asyncio.create_task(reader.run(), name=f"{reader.key}")
        try:
            async with asyncio.timeout(self.start_timeout):
                await reader.ready.wait()
        except TimeoutError:
            raise Unavailable(f"redis unavailable: cannot read the {reader.key} stream") from None

    async def subscribe(
        self,
        queue: str,
        callback: Callback,
        *,
        job_id: str | None = None,
        worker_id: str | None = None,
        stream: str = "events",
    ) -> Callable[[], None]:
        """Call `callback` for the entries of one of the queue's streams ("events" or
        "signals"), of one job, or one worker, or all, until the returned function is called."""
        reader = self._reader(queue, stream)
        if job_id is not None:
            table: dict[bytes, set[Callback]] | None = reader.by_job
            key = job_id.encode()
        elif worker_id is not None:
            table, key = reader.by_worker, worker_id.encode()
        else:
            table, key = None, b""
        if table is None:
            reader.everything.add(callback)
        else:
            table.setdefault(key, set()).add(callback)

        def unsubscribe() -> None:
            if table is None:
                reader.everything.discard(callback)
            else:
                subs = table.get(key)
                if subs is not None:
                    subs.discard(callback)
                    if not subs:
                        del table[key]

        try:
            await self._start(reader)
        except BaseException:
            unsubscribe()
            raise
        return unsubscribe

    async def close(self) -> None:
        # The flag, not only the cancel, ends the readers: redis-py may turn a cancellation
        # during a read into a connection error, which a reader survives by design.
        self.closing = True
        tasks = [r.task for r in self.readers.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.readers.clear()
