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

from .errors import JobActive
from .store import Store, redis_errors

BULK_BATCH = 200

COUNTED_STATES = ("waiting", "delayed", "active", "completed", "failed", "cancelled")

# Queue settings as stored in the queue's meta hash.
_SETTINGS_FIELDS = ("rlm", "rld", "conc", "glm", "gld", "mst")
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
                pipe.hmget(keys.key("meta"), "parked", "paused", *_SETTINGS_FIELDS)
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
                    pipe.hget(keys.key("meta"), "parked")
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
        changed = await self.store.call("pause", queue, [self._maxlen, "1" if paused else ""])
        return bool(changed)

    async def update_settings(
        self, queue: str, settings: queue_service_pb2.QueueSettings
    ) -> queue_service_pb2.QueueSettings:
        await self.store.remember_queue(queue)
        values = {
            "rlm": settings.rate_limit.max,
            "rld": settings.rate_limit.duration_ms,
            "conc": settings.concurrency,
            "glm": settings.group_rate_limit.max,
            "gld": settings.group_rate_limit.duration_ms,
            "mst": settings.max_stalled,
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
            removed = int(
                await self.store.call(
                    "drain",
                    queue,
                    [self._maxlen, self.batch, "1" if include_delayed else "", total],
                )
            )
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
            cursor, *ids = await self.store.call(
                "clean", queue, [self._maxlen, name, grace_ms, ask, len(removed), cursor, last]
            )
            removed.extend(i.decode() for i in ids)
            if cursor == -1 or len(removed) >= limit:
                return removed

    async def obliterate(self, queue: str, force: bool) -> int:
        total = 0
        while True:
            removed = int(
                await self.store.call("obliterate", queue, [self.batch, "1" if force else ""])
            )
            if removed < 0:
                raise JobActive(
                    f"queue {queue} has active jobs; cancel them first or pass force", queue=queue
                )
            if removed == 0:
                await self.store.forget_queue(queue)
                return total
            total += removed

    async def _repeat(self, script: str, queue: str, batch: int) -> int:
        total = 0
        while True:
            moved = int(await self.store.call(script, queue, [self._maxlen, batch]))
            total += moved
            if moved < batch:
                return total

    async def retry_failed(self, queue: str) -> int:
        return await self._repeat("retry_failed", queue, max(1, self.batch // 4))

    async def promote_delayed(self, queue: str) -> int:
        return await self._repeat("promote_delayed", queue, max(1, self.batch // 2))


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
