"""Queue-wide operations on the Redis store: counts, pause, settings and bulk clean-ups.

Every bulk operation is a loop of bounded script calls, so a queue of millions never blocks
Redis for long at a time: ``BULK_BATCH`` jobs per call for removals, and fewer for moves, whose
work per job is larger (a retry rewrites a dozen fields and re-queues the job). The measured
figures are in docs/queues.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jobbroker.v1 import job_pb2, queue_service_pb2

from ..errors import JobActive
from .contracts import Contract
from .contracts.hashes import MetaField
from .contracts.queues import (
    CLEAN,
    DRAIN,
    OBLITERATE,
    PAUSE,
    PROMOTE_DELAYED,
    REFUSED,
    RETRY_FAILED,
    BulkArgs,
    CleanArgs,
    DrainArgs,
    ObliterateArgs,
    PauseArgs,
)
from .store import Store, redis_errors

BULK_BATCH = 200

COUNTED_STATES = ("waiting", "delayed", "active", "completed", "failed", "cancelled")

# Queue settings as stored in the queue's meta hash, in QueueSettings' order (_settings).
_SETTINGS_FIELDS = (
    MetaField.RATE_MAX,
    MetaField.RATE_MS,
    MetaField.CONCURRENCY,
    MetaField.GROUP_RATE_MAX,
    MetaField.GROUP_RATE_MS,
    MetaField.MAX_STALLED,
)
_CLEANABLE: dict[int, str] = {
    job_pb2.JOB_STATE_WAITING: "waiting",
    job_pb2.JOB_STATE_DELAYED: "delayed",
    job_pb2.JOB_STATE_COMPLETED: "completed",
    job_pb2.JOB_STATE_FAILED: "failed",
    job_pb2.JOB_STATE_CANCELLED: "cancelled",
}


@dataclass(slots=True)
class QueueStore:
    store: Store
    batch: int = BULK_BATCH

    @property
    def _maxlen(self) -> str:
        return str(self.store.settings.events_maxlen)

    async def info(self, queue: str) -> queue_service_pb2.QueueInfo:
        keys = self.store.keys(queue)
        with redis_errors():
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for state in COUNTED_STATES:
                    pipe.zcard(keys.key(state))
                pipe.hmget(keys.key("meta"), MetaField.PARKED, MetaField.PAUSED, *_SETTINGS_FIELDS)
                *counts, meta = await pipe.execute()
        return queue_service_pb2.QueueInfo(
            name=queue,
            counts=queue_service_pb2.JobCounts(
                **dict(zip(COUNTED_STATES, _counts(counts, meta[0]), strict=True))
            ),
            paused=meta[1] == b"1",
            settings=_settings(meta[2:]),
        )

    async def counts(self, queues: Sequence[str]) -> list[tuple[int, ...]]:
        """The job counts of many queues (in ``COUNTED_STATES`` order), in one pipeline."""
        width = len(COUNTED_STATES) + 1
        with redis_errors():
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for queue in queues:
                    keys = self.store.keys(queue)
                    for state in COUNTED_STATES:
                        pipe.zcard(keys.key(state))
                    pipe.hget(keys.key("meta"), MetaField.PARKED)
                rows = await pipe.execute()
        return [
            _counts(rows[i * width : (i + 1) * width - 1], rows[(i + 1) * width - 1])
            for i in range(len(queues))
        ]

    async def all(
        self, visible: Callable[[str], bool] = lambda _: True
    ) -> list[queue_service_pb2.QueueInfo]:
        """Every known queue ``visible`` accepts, by name."""
        names = sorted(q for q in await self.store.known_queues() if visible(q))
        return [await self.info(queue) for queue in names]

    async def pause(self, queue: str, paused: bool) -> bool:
        await self.store.remember_queue(queue)
        changed = await self.store.run(PAUSE, queue, PauseArgs(self._maxlen, "1" if paused else ""))
        return bool(changed)

    async def update_settings(
        self, queue: str, settings: queue_service_pb2.QueueSettings
    ) -> queue_service_pb2.QueueSettings:
        await self.store.remember_queue(queue)
        values = {
            MetaField.RATE_MAX: settings.rate_limit.max,
            MetaField.RATE_MS: settings.rate_limit.duration_ms,
            MetaField.CONCURRENCY: settings.concurrency,
            MetaField.GROUP_RATE_MAX: settings.group_rate_limit.max,
            MetaField.GROUP_RATE_MS: settings.group_rate_limit.duration_ms,
            MetaField.MAX_STALLED: settings.max_stalled,
        }
        meta = self.store.keys(queue).key("meta")
        with redis_errors():
            async with self.store.redis.pipeline(transaction=True) as pipe:
                unset = [k for k, v in values.items() if not v]
                if unset:
                    pipe.hdel(meta, *unset)
                pairs = [item for k, v in values.items() if v for item in (k, v)]
                if pairs:
                    pipe.hset(meta, items=pairs)
                await pipe.execute()
        return (await self.info(queue)).settings

    async def drain(self, queue: str, include_delayed: bool) -> int:
        total = 0
        while True:
            args = DrainArgs(self._maxlen, self.batch, "1" if include_delayed else "", total)
            removed = await self.store.run(DRAIN, queue, args)
            total += removed
            if removed < self.batch:
                return total

    async def clean(self, queue: str, state: int, grace_ms: int, limit: int) -> list[str]:
        name = _CLEANABLE[state]
        removed: list[str] = []
        cursor = 0
        while True:
            ask = min(self.batch, limit - len(removed))
            last = "1" if len(removed) + ask >= limit else ""
            args = CleanArgs(self._maxlen, name, grace_ms, ask, len(removed), cursor, last)
            cleaned = await self.store.run(CLEAN, queue, args)
            removed.extend(i.decode() for i in cleaned.removed)
            cursor = cleaned.cursor
            if cursor == -1 or len(removed) >= limit:
                return removed

    async def obliterate(self, queue: str, force: bool) -> int:
        total = 0
        while True:
            args = ObliterateArgs(self.batch, "1" if force else "")
            removed = await self.store.run(OBLITERATE, queue, args)
            if removed == REFUSED:
                raise JobActive(
                    f"queue {queue} has active jobs; cancel them first or pass force", queue=queue
                )
            if removed == 0:
                await self.store.forget_queue(queue)
                return total
            total += removed

    async def _repeat(self, contract: Contract[BulkArgs, int], queue: str, batch: int) -> int:
        total = 0
        while True:
            moved = await self.store.run(contract, queue, BulkArgs(self._maxlen, batch))
            total += moved
            if moved < batch:
                return total

    async def retry_failed(self, queue: str) -> int:
        return await self._repeat(RETRY_FAILED, queue, max(1, self.batch // 4))

    async def promote_delayed(self, queue: str) -> int:
        return await self._repeat(PROMOTE_DELAYED, queue, max(1, self.batch // 2))


def _counts(counts: Sequence[int], parked: bytes | None) -> tuple[int, ...]:
    # Jobs parked by a group rate limit are waiting too.
    return (counts[0] + int(parked or 0), *counts[1:])


def _settings(values: list[bytes | None]) -> queue_service_pb2.QueueSettings:
    rlm, rld, conc, glm, gld, mst = (int(v) if v else 0 for v in values)
    return queue_service_pb2.QueueSettings(
        rate_limit=queue_service_pb2.RateLimit(max=rlm, duration_ms=rld),
        concurrency=conc,
        group_rate_limit=queue_service_pb2.RateLimit(max=glm, duration_ms=gld),
        max_stalled=mst,
    )
