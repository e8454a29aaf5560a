"""The Redis store: every job transition is one Lua script call, batched where it can be."""

from __future__ import annotations

import base64
import contextlib
import os
import random
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from jobbroker.v1 import events_pb2, job_pb2, worker_service_pb2

from . import codec
from .connection import Client
from .durability import Durability
from .errors import (
    AlreadyExists,
    BrokerError,
    InvalidArgument,
    Unavailable,
    item_error,
    job_not_found,
)
from .keys import QUEUES_KEY, SCHEDULED_QUEUES_KEY, QueueKeys
from .metrics import Metrics, count_redis_error
from .scripts import Arg, Scripts
from .settings import Settings

_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    # A cluster in failover: slots without a primary for a moment, or still moving.
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    OSError,
)

PAUSED = -1
"""lease(): the queue is paused."""
CONCURRENCY_FULL = -2
"""lease(): the queue's concurrency limit is reached."""

STATE_SETS = {
    job_pb2.JOB_STATE_WAITING: "waiting",
    job_pb2.JOB_STATE_DELAYED: "delayed",
    job_pb2.JOB_STATE_ACTIVE: "active",
    job_pb2.JOB_STATE_COMPLETED: "completed",
    job_pb2.JOB_STATE_FAILED: "failed",
    job_pb2.JOB_STATE_CANCELLED: "cancelled",
}


@contextlib.contextmanager
def redis_errors() -> Any:
    """Turn Redis connection trouble into UNAVAILABLE: fast, and never a false success."""
    try:
        yield
    except _UNAVAILABLE as exc:
        count_redis_error(exc)
        raise Unavailable(f"redis unavailable: {exc}") from exc


@dataclass(slots=True)
class ItemResult:
    """The outcome of one item of a batched call."""

    error: BrokerError | None
    state: int = job_pb2.JOB_STATE_UNSPECIFIED
    value: int = 0
    """Lease expiry (renewals) or run-at (failures with backoff), in ms."""


@dataclass(slots=True)
class Outcome:
    """One complete, fail or release of a leased job."""

    job_id: str
    token: str
    args: list[Arg]
    """The script's per-item values after id and token."""


def _state(value: bytes | str) -> int:
    key = value if isinstance(value, bytes) else value.encode()
    return codec.STATES.get(key, job_pb2.JOB_STATE_UNSPECIFIED)


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Store:
    """Jobs of all queues in one Redis. Thread-unsafe; one per event loop."""

    def __init__(self, client: Client, settings: Settings, metrics: Metrics | None = None) -> None:
        self.redis = client
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.scripts = Scripts(client)
        self.durability = Durability(settings)
        self._keys: dict[str, QueueKeys] = {}
        self._maxlen = str(settings.events_maxlen)

    def keys(self, queue: str) -> QueueKeys:
        keys = self._keys.get(queue)
        if keys is None:
            if len(self._keys) > 100_000:
                self._keys.clear()
            keys = self._keys[queue] = QueueKeys(queue)
        return keys

    async def call(self, name: str, queue: str, args: Sequence[Arg]) -> Any:
        """Run one script on one queue; Redis trouble becomes UNAVAILABLE."""
        with redis_errors():
            return await self.scripts.call(name, self.keys(queue), args)

    async def call_durably(self, name: str, queue: str, args: Sequence[Arg]) -> Any:
        """call(), acknowledged only once the write is as durable as ``durability`` asks."""
        if not self.durability.enabled:
            return await self.call(name, queue, args)
        with redis_errors():
            return await self.durability.call(
                self.scripts, self.redis, name, self.keys(queue), args
            )

    async def remember_queue(self, queue: str) -> None:
        """Put a queue in the registry (ListQueues, maintenance of every replica)."""
        with redis_errors():
            await self.redis.sadd(QUEUES_KEY, queue)

    async def forget_queue(self, queue: str) -> None:
        """Drop an obliterated queue from the registries."""
        with redis_errors():
            await self.redis.srem(QUEUES_KEY, queue)
            await self.redis.srem(SCHEDULED_QUEUES_KEY, queue)

    async def known_queues(self) -> set[str]:
        with redis_errors():
            members = await self.redis.smembers(QUEUES_KEY)
        return {_decode(m) for m in members}

    # --- producers -------------------------------------------------------------------------

    async def add(
        self, queue: str, jobs: Sequence[list[str | bytes]]
    ) -> list[tuple[str, int, bool]]:
        """Add validated jobs (17 values each) all or none; returns (id, state, duplicate)."""
        out = await self._add(queue, jobs, "")
        if len(out) == 2:  # {JOB_ID_CONFLICT, id}: a success has 3 values per job
            raise _conflict(queue, _decode(out[1]))
        return [
            (_decode(out[i]), _state(out[i + 1]), out[i + 2] == 1) for i in range(0, len(out), 3)
        ]

    async def add_each(
        self, queue: str, jobs: Sequence[list[str | bytes]]
    ) -> list[tuple[str, int, bool] | BrokerError]:
        """Add validated jobs each on its own in one call: a conflicting custom id fails only
        its job. Per job (id, state, duplicate) or the job's error."""
        out = await self._add(queue, jobs, "1")
        results: list[tuple[str, int, bool] | BrokerError] = []
        for i in range(0, len(out), 3):
            job_id = _decode(out[i])
            if out[i + 1] == b"JOB_ID_CONFLICT":
                results.append(_conflict(queue, job_id))
            else:
                results.append((job_id, _state(out[i + 1]), out[i + 2] == 1))
        return results

    async def _add(self, queue: str, jobs: Sequence[list[str | bytes]], each: str) -> Any:
        args: list[Arg] = [self._maxlen, len(jobs), each]
        for job in jobs:
            args.extend(job)
        out = await self.call_durably("add", queue, args)
        if len(out) != 2 and out.pop() == 1:
            # The script saw the queue unregistered (new, or obliterated by any replica).
            await self.remember_queue(queue)
        return out  # without the registration flag

    async def snapshot(self, queue: str, job_id: str) -> tuple[job_pb2.Job, str]:
        """The job and the id of the newest event its snapshot includes."""
        fields, log_count, last_id = await self.call("get", queue, [job_id])
        if not fields:
            raise job_not_found(queue, job_id)
        mapping = dict(zip(fields[::2], fields[1::2], strict=True))
        return codec.job(queue, job_id, mapping, log_count), _decode(last_id)

    async def _single(self, script: str, queue: str, job_id: str, *extra: Arg) -> int:
        reason, state = await self.call(script, queue, [self._maxlen, job_id, *extra])
        if reason:
            raise item_error(_decode(reason), queue, job_id, _decode(state))
        return _state(state)

    async def cancel(self, queue: str, job_id: str, reason: str) -> int:
        return await self._single("cancel", queue, job_id, reason)

    async def retry(self, queue: str, job_id: str) -> int:
        return await self._single("retry", queue, job_id)

    async def promote(self, queue: str, job_id: str) -> int:
        return await self._single("promote", queue, job_id)

    async def remove(self, queue: str, job_id: str) -> int:
        return await self._single("remove", queue, job_id)

    async def list_jobs(
        self, queue: str, state: int, page_size: int, page_token: str, descending: bool
    ) -> tuple[list[job_pb2.Job], str, int]:
        set_name = STATE_SETS.get(state)  # type: ignore[call-overload]
        if set_name is None:
            raise InvalidArgument("state", "must be a job state (waiting, delayed, ...)")
        offset = _decode_page_token(page_token)
        keys = self.keys(queue)
        set_key = keys.key(set_name)
        with redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(set_key)
                pipe.zrange(set_key, offset, offset + page_size - 1, desc=descending)
                total, ids = await pipe.execute()
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(keys.job(_decode(job_id)))
                    pipe.llen(keys.logs(_decode(job_id)))
                rows = await pipe.execute()
        jobs = [
            codec.job(queue, _decode(job_id), rows[2 * i], rows[2 * i + 1])
            for i, job_id in enumerate(ids)
            if rows[2 * i]
        ]
        next_offset = offset + len(ids)
        token = _encode_page_token(next_offset) if next_offset < total and ids else ""
        return jobs, token, total

    async def logs(self, queue: str, job_id: str, offset: int, limit: int) -> tuple[list[str], int]:
        keys = self.keys(queue)
        with redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.exists(keys.job(job_id))
                pipe.llen(keys.logs(job_id))
                pipe.lrange(keys.logs(job_id), offset, offset + limit - 1)
                exists, total, lines = await pipe.execute()
        if not exists:
            raise job_not_found(queue, job_id)
        return [_decode(line) for line in lines], total

    async def read_events(
        self, queue: str, after_id: str, count: int
    ) -> tuple[list[tuple[bytes, dict[bytes, bytes]]], bool]:
        """Up to `count` events of a queue after an id (exclusive), oldest first, and whether
        events after that id were trimmed away, both read in one MULTI (count 0: only the
        latter)."""
        keys = self.keys(queue)
        key = keys.key("events")
        with redis_errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xinfo_stream(key)
                pipe.hget(keys.key("meta"), "trimmed")
                if count:
                    pipe.xrange(key, min=f"({after_id}", count=count)
                info, trimmed, *rows = await pipe.execute(raise_on_error=False)
        if rows and isinstance(rows[0], Exception):
            raise rows[0]
        lost = _lost_after(info, trimmed if isinstance(trimmed, bytes) else None, after_id)
        return list(rows[0] or []) if rows else [], lost

    async def newest_event_id(self, queue: str) -> str:
        """The id of the newest event the queue keeps ('' when it keeps none)."""
        with redis_errors():
            row = await self.redis.xrevrange(self.keys(queue).key("events"), count=1)
        return _decode(row[0][0] or b"") if row else ""

    # --- workers ---------------------------------------------------------------------------

    async def lease(
        self, queue: str, worker_id: str, max_jobs: int, lease_ms: int, tag: str = ""
    ) -> tuple[list[worker_service_pb2.LeasedJob], int]:
        """Lease up to `max_jobs`; also returns what held leasing back: 0 nothing, PAUSED,
        CONCURRENCY_FULL, or the ms until the rate-limit window ends. The lease tokens carry
        `tag` after their fence (the taker's token id, binding the leases to it)."""
        out = await self.call(
            "lease", queue, [self._maxlen, max_jobs, worker_id, lease_ms, tag + os.urandom(8).hex()]
        )
        held = int(out.pop())
        leased = []
        self.metrics.leased(queue, out[13::14])
        for i in range(0, len(out), 14):
            # Built field by field: a Payload message passed to the constructor costs twice
            # the time of the whole rest (bench/profiling.md).
            job = worker_service_pb2.LeasedJob(
                queue=queue,
                job_id=out[i].decode(),
                name=out[i + 1].decode(),
                attempt=out[i + 4],
                max_attempts=out[i + 5],
                token=out[i + 6].decode(),
                fence=out[i + 7],
                lease_expires_at_ms=out[i + 8],
                timeout_at_ms=out[i + 9],
            )
            data = job.data
            data.body = out[i + 2]
            if out[i + 3]:
                data.content_type = out[i + 3].decode()
            if out[i + 10] or out[i + 11]:
                fields = {b"pp": out[i + 10], b"pv": out[i + 11], b"pvt": out[i + 12]}
                job.progress.CopyFrom(codec.progress({k: v for k, v in fields.items() if v}))
            leased.append(job)
        return leased, held

    async def report(
        self, queue: str, updates: Sequence[worker_service_pb2.LeaseUpdate], lease_ms: Iterable[int]
    ) -> list[ItemResult]:
        """Renew leases with progress and logs; `lease_ms` gives each update's checked duration."""
        args: list[Arg] = [self._maxlen, len(updates), self.settings.max_log_lines]
        for update, duration in zip(updates, lease_ms, strict=True):
            args += [update.job_id, update.token, duration]
            if update.HasField("percent"):
                args += ["1", repr(update.percent)]
            else:
                args += ["", ""]
            if update.HasField("value"):
                args += ["1", update.value.body, update.value.content_type]
            else:
                args += ["", "", ""]
            args.append(len(update.log_lines))
            args.extend(update.log_lines)
        out = await self.call("report", queue, args)
        results = []
        for i, update in enumerate(updates):
            reason, value = out[2 * i], out[2 * i + 1]
            if reason:
                error = item_error(_decode(reason), queue, update.job_id, _decode(value))
                results.append(ItemResult(error))
            else:
                results.append(ItemResult(None, job_pb2.JOB_STATE_ACTIVE, int(value)))
        return results

    async def _outcomes(
        self, script: str, queue: str, items: Sequence[Outcome], width: int
    ) -> list[ItemResult]:
        args: list[Arg] = [self._maxlen, len(items)]
        for item in items:
            args += [item.job_id, item.token, *item.args]
        out = await self.call(script, queue, args)
        results = []
        ended: list[tuple[bytes | str, int]] = []
        for i, item in enumerate(items):
            row = out[i * width : (i + 1) * width]
            if row[0]:
                error = item_error(_decode(row[0]), queue, item.job_id, _decode(row[1]))
                results.append(ItemResult(error))
                continue
            results.append(ItemResult(None, _state(row[1]), int(row[2]) if width > 3 else 0))
            if width > 2:  # complete and fail rows end with the attempt's run time
                ended.append((row[1], int(row[-1])))
        self.metrics.attempts_ended(queue, ended)
        return results

    async def complete(self, queue: str, items: Sequence[Outcome]) -> list[ItemResult]:
        """Items' args: result body, result content type."""
        return await self._outcomes("complete", queue, items, 3)

    async def fail(self, queue: str, items: Sequence[Outcome]) -> list[ItemResult]:
        """Items' args: message, error type, stack, no retry ('1'/''); jitter is added here."""
        for item in items:
            item.args.append(repr(random.random()))
        return await self._outcomes("fail", queue, items, 4)

    async def release(self, queue: str, items: Sequence[Outcome]) -> list[ItemResult]:
        """Items' args: delay ms."""
        return await self._outcomes("release", queue, items, 2)

    # --- maintenance -----------------------------------------------------------------------

    async def maintain(self, queues: Sequence[str]) -> tuple[list[int], int]:
        """One bounded maintenance pass over some queues, in one pipeline: promote due delayed
        jobs, end expired leases, expire jobs past their lifespan. Returns, per queue, the
        milliseconds until something is next due (0: more work is waiting now; -1: nothing is
        scheduled), and Redis' time."""
        batch = self.settings.maintenance_batch
        with redis_errors():
            await self.scripts.load_all_once()
            async with self.redis.pipeline(transaction=False) as pipe:
                for queue in queues:
                    keys = self.keys(queue)
                    self.scripts.queue_call(pipe, "promote_due", keys, [self._maxlen, batch])
                    self.scripts.queue_call(
                        pipe,
                        "reap",
                        keys,
                        [self._maxlen, batch, self.settings.max_stalled, repr(random.random())],
                    )
                    self.scripts.queue_call(pipe, "expire", keys, [self._maxlen, batch])
                try:
                    results = await pipe.execute()
                except redis.exceptions.NoScriptError:
                    self.scripts.loaded = False  # Redis restarted empty: load again, retry
                    return [0] * len(queues), await self.redis_time_ms()
        waits = []
        for i, queue in enumerate(queues):
            self.metrics.reaped(queue, *results[3 * i + 1][3:6])
            wait = -1
            for moved, due, now, *_ in results[3 * i : 3 * i + 3]:
                if moved >= batch:
                    wait = 0
                elif due >= 0 and (wait < 0 or due - now < wait):
                    wait = max(0, int(due) - int(now))
            waits.append(wait)
        return waits, int(results[0][2]) if results else await self.redis_time_ms()

    async def redis_time_ms(self) -> int:
        with redis_errors():
            seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (*_UNAVAILABLE, redis.exceptions.RedisError) as exc:
            count_redis_error(exc)
            return False


def _conflict(queue: str, job_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"job id {job_id!r} already names a job with another name or data in queue {queue!r}",
        queue=queue,
        job_id=job_id,
    )


def _encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _decode_page_token(token: str) -> int:
    if not token:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        offset = int(value)
    except (ValueError, UnicodeDecodeError):
        kind, offset = "", -1
    if kind != "o" or offset < 0:
        raise InvalidArgument("page_token", "is not a token returned by ListJobs")
    return offset


async def iterate_events(
    store: Store, queue: str, after_id: str, until_id: str, batch: int = 1000
) -> AsyncIterator[events_pb2.JobEvent]:
    """The events of a queue after `after_id` up to `until_id` (inclusive), oldest first."""
    position = after_id
    limit = codec.stream_id_key(until_id)
    while True:
        rows, _ = await store.read_events(queue, position, batch)
        for event_id, fields in rows:
            if codec.stream_id_key(event_id) > limit:
                return
            yield codec.event(queue, event_id, fields)
        if len(rows) < batch:
            return
        position = _decode(rows[-1][0])


def _lost_after(info: Any, trimmed: bytes | None, position: str) -> bool:
    """True when the stream was trimmed and `position` is older than the oldest event it keeps
    (trimming removes the oldest events first, so "0-0" on a never-trimmed stream is not
    flagged, an older id on a trimmed one is). Whether anything was ever removed: Redis 7
    counts what was added (`entries-added` > `length`); Redis 6.2 does not, and there the
    count the scripts keep of what they trimmed (`trimmed` in the queue's meta hash) says."""
    if not isinstance(info, dict):
        return False  # no stream: no event was ever kept, none was lost
    added, length = info.get("entries-added"), info.get("length")
    if added is not None and length is not None:
        removed = int(added) - int(length)
    else:
        removed = int(trimmed or 0)
    if removed <= 0:
        return False
    first: Any = info.get("first-entry")
    return bool(first) and codec.stream_id_key(first[0]) > codec.stream_id_key(position)
