"""Live workers per queue, kept in Redis from the calls workers make.

Each queue has a hash ``jb:{q}:workers``: field = worker id, value = ``"<last seen ms>|<queues>"``
(queue names never hold ``|`` or ``,``). A Lease call or a ReportProgress message is a sighting.
A replica writes a sighting at most once per :data:`THROTTLE_S` per worker and queue, so busy
workers cost nothing; every key is in the queue's slot, so this works on Redis Cluster (no
CLIENT LIST). "Now" is Redis' clock, read inside the scripts (``lua/worker_seen.lua`` and
``lua/list_workers.lua``).

The hash stays small without anyone listing it: each write expires the whole hash one window
later (if nobody wrote for a window, every entry in it is stale) and drops stale entries from a
random sample of three, the way Redis expires keys.

``active_jobs`` is counted when listing, from the ``w`` field of the jobs in the queue's active
set: exact across replicas and free for the workers, at a listing cost bounded by
:data:`MAX_ACTIVE_SCAN` jobs (on a queue with more active jobs, counts cover the leases that
expire first, and are a lower bound).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..errors import BrokerError
from ..storage.contracts.workers import LIST_WORKERS, WORKER_SEEN, ListArgs, SeenArgs
from ..storage.store import Store

log = logging.getLogger(__name__)

WINDOW_MS = 60_000
"""Workers not seen for this long are not listed, and their entries are pruned."""

THROTTLE_S = 1.0
"""A replica records a worker's sighting in a queue at most this often."""

MAX_ACTIVE_SCAN = 10_000
"""Active jobs ListWorkers reads at most to count each worker's leases."""

MAX_PRUNE = 1_000
"""Stale entries one listing deletes at most."""


@dataclass(frozen=True, slots=True)
class Worker:
    """One live worker of a queue."""

    worker_id: str
    last_seen_ms: int
    queues: list[str]
    active_jobs: int

    @property
    def host(self) -> str:
        """The host part of an SDK-style id ("host:pid:random"), else ''."""
        parts = self.worker_id.split(":")
        return parts[0] if len(parts) >= 3 else ""


class WorkerRegistry:
    """Records sightings (throttled per replica) and lists a queue's live workers."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._written: dict[tuple[str, str], float] = {}

    def _due(self, queue: str, worker_id: str) -> bool:
        now = time.monotonic()
        key = (queue, worker_id)
        last = self._written.get(key)
        if last is not None and now - last < THROTTLE_S:
            return False
        if len(self._written) > 100_000:
            self._written.clear()
        self._written[key] = now
        return True

    async def _write(self, queue: str, worker_id: str, queues: str, merge: bool) -> None:
        try:
            args = SeenArgs(worker_id, queues, "1" if merge else "0", WINDOW_MS)
            await self.store.run(WORKER_SEEN, queue, args)
        except BrokerError as error:
            # A lost sighting only delays the worker's listing; never fail the worker's call.
            self._written.pop((queue, worker_id), None)
            log.debug(
                "worker sighting of %s in %s not recorded: %s",
                worker_id,
                queue,
                error,
                extra={"queue": queue, "worker_id": worker_id},
            )

    async def leased(self, queue: str, worker_id: str) -> None:
        """A Lease call: the worker takes jobs from `queue` (added to the queues known)."""
        if self._due(queue, worker_id):
            await self._write(queue, worker_id, queue, merge=True)

    async def streaming(self, worker_id: str, queues: list[str]) -> None:
        """A ReportProgress message of a worker whose stream serves `queues`."""
        if not worker_id:
            return
        names = ",".join(sorted(queues))
        for queue in queues:
            if self._due(queue, worker_id):
                await self._write(queue, worker_id, names, merge=False)

    async def list(self, queue: str) -> list[Worker]:
        """Workers seen in `queue` within :data:`WINDOW_MS`, most recent first; prunes the
        stale entries (at most :data:`MAX_PRUNE` per call)."""
        rows = await self.store.run(
            LIST_WORKERS, queue, ListArgs(WINDOW_MS, MAX_ACTIVE_SCAN, MAX_PRUNE)
        )
        workers = [
            Worker(
                worker_id=_text(row.worker),
                last_seen_ms=int(row.last_seen),
                queues=[q for q in _text(row.queues).split(",") if q],
                active_jobs=int(row.active_jobs),
            )
            for row in rows
        ]
        workers.sort(key=lambda w: (-w.last_seen_ms, w.worker_id))
        return workers


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
