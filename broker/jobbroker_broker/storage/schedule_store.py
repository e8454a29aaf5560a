"""Repeatable jobs in Redis: one hash per schedule plus a sorted set of keys by next run.

``jb:{q}:schedule:<key>`` holds ``def`` (the normalized Schedule message), ``v`` (version,
bumped by every upsert that changes it), ``nr`` (next run ms, 0 once ended), ``runs``, ``anc``
(every_ms anchor) and the job template (``name data dct o1..o13``: see
:func:`.contracts.schedules.template`).
``jb:{q}:schedules`` scores keys by next run (``+inf`` once ended). Next runs are computed here, in
Python; ``fire_schedule.lua`` adds an occurrence's job only if the schedule still has the version
and next run the caller read, so replicas racing on one occurrence add it once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import redis.exceptions
from jobbroker.v1 import queue_service_pb2 as pb

from ..errors import schedule_not_found
from . import cron
from .contracts import Arg
from .contracts.jobs import AddJob
from .contracts.schedules import FIRE_SCHEDULE, FireArgs, template
from .keys import SCHEDULED_QUEUES_KEY
from .store import Store, redis_errors


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _timing(definition: pb.Schedule, anchor_ms: int) -> cron.Timing:
    return cron.Timing(
        cron=definition.cron,
        zone=definition.timezone or "UTC",
        every_ms=definition.every_ms,
        anchor_ms=anchor_ms,
    )


def following_run(definition: pb.Schedule, anchor_ms: int, runs: int, after_ms: int) -> int:
    """The run after `after_ms` for a schedule that has made `runs` runs; 0 when it has ended
    (limit reached, past end_at_ms, or no occurrence left)."""
    if definition.limit and runs >= definition.limit:
        return 0
    after = max(after_ms, definition.start_at_ms - 1)
    at = cron.next_run(_timing(definition, anchor_ms), after)
    if at is None or (definition.end_at_ms and at > definition.end_at_ms):
        return 0
    return at


def _decode(queue: str, fields: dict[Any, Any]) -> pb.Schedule:
    schedule = pb.Schedule.FromString(fields[b"def"])
    schedule.queue = queue
    schedule.next_run_at_ms = int(fields.get(b"nr", b"0"))
    schedule.runs = int(fields.get(b"runs", b"0"))
    return schedule


class ScheduleStore:
    """Schedules of all queues, over the broker's Store (its client and scripts)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def upsert(self, definition: pb.Schedule, job: AddJob) -> pb.Schedule:
        """Create or replace a validated, normalized schedule (`job`: its job template, the id
        unused). An upsert that changes nothing keeps the next run and runs, so callers
        may upsert at every start; one that changes anything keeps `runs` and recomputes the
        next run from now."""
        queue, key = definition.queue, definition.key
        await self.store.remember_queue(queue)
        keys = self.store.keys(queue)
        hkey, zkey = keys.schedule(key), keys.key("schedules")
        stored = definition.SerializeToString(deterministic=True)
        with redis_errors():
            await self.store.redis.sadd(SCHEDULED_QUEUES_KEY, queue)
            async with self.store.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(hkey)
                        current: dict[Any, Any] = await pipe.hgetall(hkey)
                        if current.get(b"def") == stored:
                            return _decode(queue, current)
                        (now,) = await self.store.now_ms([queue])
                        runs = int(current.get(b"runs", b"0"))
                        anchor = definition.start_at_ms or now
                        next_at = following_run(definition, anchor, runs, now - 1)
                        fields: dict[str, Arg] = {
                            "def": stored,
                            "nr": next_at,
                            "anc": anchor,
                            "runs": runs,
                        }
                        fields.update(template(job))
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.hset(hkey, mapping=fields)  # type: ignore[arg-type]
                        pipe.hincrby(hkey, "v", 1)
                        pipe.zadd(zkey, {key: next_at or math.inf})
                        await pipe.execute()
                        break
                    except redis.exceptions.WatchError:
                        continue
        return await self.get(queue, key)

    async def get(self, queue: str, key: str) -> pb.Schedule:
        with redis_errors():
            fields: dict[Any, Any] = await self.store.redis.hgetall(
                self.store.keys(queue).schedule(key)
            )
        if not fields:
            raise schedule_not_found(queue, key)
        return _decode(queue, fields)

    async def in_queue(self, queue: str) -> list[pb.Schedule]:
        """The queue's schedules by next run time, ended ones last."""
        keys = self.store.keys(queue)
        with redis_errors():
            names: list[Any] = await self.store.redis.zrange(keys.key("schedules"), 0, -1)
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(keys.schedule(_text(name)))
                rows = await pipe.execute()
        return [_decode(queue, row) for row in rows if row]

    async def remove(self, queue: str, key: str) -> None:
        """Remove a schedule; the jobs it already added stay."""
        keys = self.store.keys(queue)
        with redis_errors():
            async with self.store.redis.pipeline(transaction=True) as pipe:
                pipe.delete(keys.schedule(key))
                pipe.zrem(keys.key("schedules"), key)
                deleted, _ = await pipe.execute()
        if not deleted:
            raise schedule_not_found(queue, key)

    # --- firing ----------------------------------------------------------------------------

    async def scheduled_count(self) -> int:
        with redis_errors():
            return int(await self.store.redis.scard(SCHEDULED_QUEUES_KEY))

    async def scheduled_queues(self) -> list[str]:
        with redis_errors():
            members = await self.store.redis.smembers(SCHEDULED_QUEUES_KEY)
        return sorted(_text(m) for m in members)

    async def heads(self, queues: Sequence[str], batch: int) -> list[list[tuple[str, float]]]:
        """Per queue, its first `batch` schedules (key, next run) by next run, ended excluded."""
        with redis_errors():
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for queue in queues:
                    pipe.zrange(
                        self.store.keys(queue).key("schedules"),
                        "-inf",
                        "(+inf",
                        byscore=True,
                        offset=0,
                        num=batch,
                        withscores=True,
                    )
                rows = await pipe.execute()
        return [[(_text(name), float(score)) for name, score in row] for row in rows]

    async def fire(self, queue: str, keys: Sequence[str], now_ms: int) -> int | None:
        """Fire the due occurrence of each schedule (one that another replica fired first, or
        that changed since, is skipped). Returns the earliest next run stored (0: none), or
        None when a schedule was skipped, so its next run is unknown here."""
        qkeys = self.store.keys(queue)
        with redis_errors():
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(qkeys.schedule(key), "def", "v", "nr", "runs", "anc")
                rows: list[list[Any]] = await pipe.execute()
        earliest: int | None = 0
        for key, (stored, version, next_at, runs, anchor) in zip(keys, rows, strict=True):
            occurrence = int(next_at or 0)
            if stored is None or occurrence == 0 or occurrence > now_ms:
                earliest = None
                continue
            definition = pb.Schedule.FromString(stored)
            # Occurrences missed while no replica ran are not caught up: the overdue one fires
            # once, and the schedule moves on to its first run after now.
            following = following_run(
                definition, int(anchor or 0), int(runs or 0) + 1, max(occurrence, now_ms)
            )
            args = FireArgs(
                self.store.settings.events_maxlen,
                key,
                _text(version),
                str(occurrence),
                str(following) if following else "",
            )
            fired = await self.store.run(FIRE_SCHEDULE, queue, args)
            if not fired.fired:
                earliest = None
            elif following and earliest is not None:
                earliest = min(earliest, following) if earliest else following
        return earliest
