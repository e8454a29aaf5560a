"""The Redis store: every job transition is one Lua script call, batched where it can be."""

from __future__ import annotations

import base64
import contextlib
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import redis.exceptions
from jobbroker.v1 import events_pb2, job_pb2, worker_service_pb2

from ..errors import (
    AlreadyExists,
    BrokerError,
    InvalidArgument,
    Unavailable,
    item_error,
    job_not_found,
)
from ..metrics import Metrics, count_redis_error
from ..settings import Settings
from . import codec
from .coalesce import Coalesced
from .connection import Client
from .contracts import Contract
from .contracts.base import RowsThen
from .contracts.hashes import JobField
from .contracts.jobs import (
    ADD,
    CANCEL,
    CONFLICT,
    GET,
    PROMOTE,
    REMOVE,
    RETRY,
    AddArgs,
    Added,
    AddJob,
    AddTail,
    CancelArgs,
    GetArgs,
    JobArgs,
    Transition,
)
from .contracts.leases import (
    COMPLETE,
    COMPLETE_LEASE,
    CONCURRENCY_FULL,
    FAIL,
    LEASE,
    PAUSED,
    RELEASE,
    REPORT,
    BatchArgs,
    Completed,
    CompleteItem,
    CompleteLeaseArgs,
    FailItem,
    LeaseArgs,
    Leased,
    LeaseHeld,
    Outcome,
    ReleaseItem,
    ReportArgs,
    ReportItem,
)
from .contracts.maintenance import EXPIRE, PROMOTE_DUE, REAP, PassArgs, ReapArgs
from .durability import Durability
from .keys import QUEUES_KEY, SCHEDULED_QUEUES_KEY, QueueKeys
from .scripts import Scripts

__all__ = [
    "CONCURRENCY_FULL",
    "PAUSED",
    "STATE_SETS",
    "ItemResult",
    "Outcome",
    "Store",
    "iterate_events",
    "redis_errors",
]

if TYPE_CHECKING:
    from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

    Jobs = RepeatedCompositeFieldContainer[worker_service_pb2.LeasedJob]
    """A reply's repeated LeasedJob field."""

A = TypeVar("A", bound=tuple[Any, ...])
R = TypeVar("R")

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

Replied = Callable[[], Awaitable[None]]
"""Awaited by a store call between Redis' answer and the decoding of it (the worker stream lets
its next message's script call start there: bench/profiling.md)."""

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
        self.scripts = Scripts(client, settings.test_clock)
        self.durability = Durability(settings)
        self._keys: dict[str, QueueKeys] = {}
        self._maxlen = str(settings.events_maxlen)
        self._snapshots = Coalesced(self._read_snapshot)

    def keys(self, queue: str) -> QueueKeys:
        keys = self._keys.get(queue)
        if keys is None:
            if len(self._keys) > 100_000:
                self._keys.clear()
            keys = self._keys[queue] = QueueKeys(queue)
        return keys

    async def run(
        self, contract: Contract[A, R], queue: str, args: A, items: Iterable[tuple[Any, ...]] = ()
    ) -> R:
        """Run one script on one queue, its reply decoded; Redis trouble becomes UNAVAILABLE."""
        with redis_errors():
            raw = await self.scripts.call(contract, self.keys(queue), contract.argv(args, items))
        return contract.reply(raw)

    async def run_durably(
        self, contract: Contract[A, R], queue: str, args: A, items: Iterable[tuple[Any, ...]] = ()
    ) -> R:
        """run(), acknowledged only once the write is as durable as ``durability`` asks."""
        self.durability.admit(queue)
        if not self.durability.enabled:
            return await self.run(contract, queue, args, items)
        with redis_errors():
            raw = await self.durability.call(
                self.scripts, self.redis, contract, self.keys(queue), contract.argv(args, items)
            )
        return contract.reply(raw)

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

    async def add(self, queue: str, jobs: Sequence[AddJob]) -> list[tuple[str, int, bool]]:
        """Add validated jobs all or none; returns (id, state, duplicate)."""
        added = []
        for row in (await self._add(queue, jobs, "")).rows:
            if row.state == CONFLICT:  # all or none: then it is the only row
                raise _conflict(queue, _decode(row.id))
            added.append((_decode(row.id), _state(row.state), row.duplicate == 1))
        return added

    async def add_each(
        self, queue: str, jobs: Sequence[AddJob]
    ) -> list[tuple[str, int, bool] | BrokerError]:
        """Add validated jobs each on its own in one call: a conflicting custom id fails only
        its job. Per job (id, state, duplicate) or the job's error."""
        reply = await self._add(queue, jobs, "1")
        results: list[tuple[str, int, bool] | BrokerError] = []
        for row in reply.rows:
            job_id = _decode(row.id)
            if row.state == CONFLICT:
                results.append(_conflict(queue, job_id))
            else:
                results.append((job_id, _state(row.state), row.duplicate == 1))
        return results

    async def _add(self, queue: str, jobs: Sequence[AddJob], each: str) -> RowsThen[Added, AddTail]:
        reply = await self.run_durably(ADD, queue, AddArgs(self._maxlen, len(jobs), each), jobs)
        if reply.then.registered == 1:
            # The script saw the queue unregistered (new, or obliterated by any replica).
            await self.remember_queue(queue)
        return reply

    async def snapshot(self, queue: str, job_id: str) -> tuple[job_pb2.Job, str]:
        """The job and the id of the newest event its snapshot includes, read after this call
        began (concurrent calls for one job share reads: see coalesce.py). The job is shared
        between those callers: copy it before changing it."""
        return await self._snapshots((queue, job_id))

    async def _read_snapshot(self, key: tuple[str, str]) -> tuple[job_pb2.Job, str]:
        queue, job_id = key
        snap = await self.run(GET, queue, GetArgs(job_id))
        if not snap.fields:
            raise job_not_found(queue, job_id)
        job = codec.job(queue, job_id, snap.mapping(), snap.log_count)
        return job, _decode(snap.last_event_id)

    async def _single(self, contract: Contract[A, Transition], queue: str, args: A) -> int:
        done = await self.run(contract, queue, args)
        if done.reason:
            job_id: str = getattr(args, "id")  # noqa: B009 - every single-job script's has one
            raise item_error(_decode(done.reason), queue, job_id, _decode(done.state))
        return _state(done.state)

    async def cancel(self, queue: str, job_id: str, reason: str) -> int:
        return await self._single(CANCEL, queue, CancelArgs(self._maxlen, job_id, reason))

    async def retry(self, queue: str, job_id: str) -> int:
        return await self._single(RETRY, queue, JobArgs(self._maxlen, job_id))

    async def promote(self, queue: str, job_id: str) -> int:
        return await self._single(PROMOTE, queue, JobArgs(self._maxlen, job_id))

    async def remove(self, queue: str, job_id: str) -> int:
        return await self._single(REMOVE, queue, JobArgs(self._maxlen, job_id))

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
        replies = iter(rows)  # a hash and a log count per job
        jobs = [
            codec.job(queue, _decode(job_id), fields, log_count)
            for job_id, fields, log_count in zip(ids, replies, replies, strict=True)
            if fields
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
        self,
        queue: str,
        worker_id: str,
        max_jobs: int,
        lease_ms: int,
        tag: str = "",
        into: Jobs | None = None,
        replied: Replied | None = None,
    ) -> tuple[list[worker_service_pb2.LeasedJob], int]:
        """Lease up to `max_jobs`; also returns what held leasing back: 0 nothing, PAUSED,
        CONCURRENCY_FULL, or the ms until the rate-limit window ends. The lease tokens carry
        `tag` after their fence (the taker's token id, binding the leases to it). With `into`
        (a reply's repeated LeasedJob field), the jobs are built in it, not copied there.
        `replied` is awaited once Redis answered, before the jobs are built from its reply."""
        args = LeaseArgs(self._maxlen, max_jobs, worker_id, lease_ms, _token_suffix(tag))
        reply = await self.run(LEASE, queue, args)
        if replied is not None:
            await replied()
        return self._leased(queue, reply, into)

    async def complete_lease(
        self,
        queue: str,
        items: Sequence[CompleteItem],
        worker_id: str,
        max_jobs: int,
        lease_ms: int,
        tag: str = "",
        into: Jobs | None = None,
        replied: Replied | None = None,
    ) -> tuple[list[ItemResult], list[worker_service_pb2.LeasedJob], int]:
        """complete() then lease() on one queue in one script call: the completions' results,
        the jobs leased and what held leasing back (as lease()'s, `replied` too)."""
        args = CompleteLeaseArgs(
            self._maxlen, max_jobs, worker_id, lease_ms, _token_suffix(tag), len(items)
        )
        reply = await self.run(COMPLETE_LEASE, queue, args, items)
        if replied is not None:
            await replied()
        results = self._completed(queue, items, COMPLETE.reply(reply.completed))
        return (results, *self._leased(queue, LEASE.reply(reply.leased), into))

    def _leased(
        self, queue: str, reply: RowsThen[Leased, LeaseHeld], into: Jobs | None = None
    ) -> tuple[list[worker_service_pb2.LeasedJob], int]:
        rows = reply.rows
        self.metrics.leased(queue, [row.wait_ms for row in rows])
        leased = []
        make = worker_service_pb2.LeasedJob if into is None else into.add
        for row in rows:
            # Built field by field: a Payload message passed to the constructor costs twice
            # the time of the whole rest (bench/profiling.md).
            job = make(
                queue=queue,
                job_id=row.id.decode(),
                name=row.name.decode(),
                attempt=row.attempt,
                max_attempts=row.max_attempts,
                token=row.token.decode(),
                fence=row.fence,
                lease_expires_at_ms=row.lease_expires_at,
                timeout_at_ms=row.timeout_at,
            )
            data = job.data
            data.body = row.data
            if row.data_type:
                data.content_type = row.data_type.decode()
            if row.progress_percent or row.progress_value:
                progress = {
                    JobField.PROGRESS_PERCENT: row.progress_percent,
                    JobField.PROGRESS_VALUE: row.progress_value,
                    JobField.PROGRESS_VALUE_TYPE: row.progress_type,
                }
                job.progress.CopyFrom(codec.progress({k: v for k, v in progress.items() if v}))
            if row.trace_context:
                codec.trace_context(row.trace_context, job.trace_context)
            leased.append(job)
        return leased, reply.then.held

    async def report(
        self, queue: str, updates: Sequence[worker_service_pb2.LeaseUpdate], lease_ms: Iterable[int]
    ) -> list[ItemResult]:
        """Renew leases with progress and logs; `lease_ms` gives each update's checked duration."""
        items = [
            ReportItem(
                id=update.job_id,
                token=update.token,
                lease_ms=duration,
                has_percent="1" if update.HasField("percent") else "",
                percent=repr(update.percent) if update.HasField("percent") else "",
                has_value="1" if update.HasField("value") else "",
                value=update.value.body,
                value_type=update.value.content_type,
                log_lines=update.log_lines,
            )
            for update, duration in zip(updates, lease_ms, strict=True)
        ]
        args = ReportArgs(self._maxlen, len(items), self.settings.max_log_lines)
        rows = await self.run(REPORT, queue, args, items)
        results = []
        for item, row in zip(items, rows, strict=True):
            if row.reason:
                state = _decode(row.value) if isinstance(row.value, bytes) else str(row.value)
                results.append(ItemResult(item_error(_decode(row.reason), queue, item.id, state)))
            else:
                results.append(ItemResult(None, job_pb2.JOB_STATE_ACTIVE, int(row.value)))
        return results

    async def complete(self, queue: str, items: Sequence[CompleteItem]) -> list[ItemResult]:
        rows = await self.run(COMPLETE, queue, BatchArgs(self._maxlen, len(items)), items)
        return self._completed(queue, items, rows)

    def _completed(
        self, queue: str, items: Sequence[CompleteItem], rows: list[Completed]
    ) -> list[ItemResult]:
        results = []
        ended: list[tuple[bytes | str, int]] = []
        for item, row in zip(items, rows, strict=True):
            if row.reason:
                results.append(self._refused(queue, item.id, row.reason, row.state))
            else:
                results.append(ItemResult(None, _state(row.state)))
                ended.append((row.state, row.run_ms))
        self.metrics.attempts_ended(queue, ended)
        return results

    async def fail(self, queue: str, items: Sequence[FailItem]) -> list[ItemResult]:
        rows = await self.run(FAIL, queue, BatchArgs(self._maxlen, len(items)), items)
        results = []
        ended: list[tuple[bytes | str, int]] = []
        for item, row in zip(items, rows, strict=True):
            if row.reason:
                results.append(self._refused(queue, item.id, row.reason, row.state))
            else:
                results.append(ItemResult(None, _state(row.state), row.run_at))
                ended.append((row.state, row.run_ms))
        self.metrics.attempts_ended(queue, ended)
        return results

    async def release(self, queue: str, items: Sequence[ReleaseItem]) -> list[ItemResult]:
        rows = await self.run(RELEASE, queue, BatchArgs(self._maxlen, len(items)), items)
        return [
            self._refused(queue, item.id, row.reason, row.state)
            if row.reason
            else ItemResult(None, _state(row.state))
            for item, row in zip(items, rows, strict=True)
        ]

    @staticmethod
    def _refused(queue: str, job_id: str, reason: bytes, state: bytes) -> ItemResult:
        return ItemResult(item_error(_decode(reason), queue, job_id, _decode(state)))

    # --- maintenance -----------------------------------------------------------------------

    async def maintain(self, queues: Sequence[str]) -> tuple[list[int], list[int]]:
        """One bounded maintenance pass over some queues, in one pipeline: promote due delayed
        jobs, end expired leases, expire jobs past their lifespan. Returns, per queue, the
        milliseconds until something is next due (0: more work is waiting now; -1: nothing is
        scheduled), and, per queue, "now" as its scripts saw it (:meth:`now_ms`)."""
        batch = self.settings.maintenance_batch
        promote_args = PROMOTE_DUE.argv(PassArgs(self._maxlen, batch))
        expire_args = EXPIRE.argv(PassArgs(self._maxlen, batch))
        with redis_errors():
            await self.scripts.load_all_once()
            async with self.redis.pipeline(transaction=False) as pipe:
                for queue in queues:
                    keys = self.keys(queue)
                    reap_args = ReapArgs(
                        self._maxlen, batch, self.settings.max_stalled, repr(random.random())
                    )
                    self.scripts.queue_call(pipe, PROMOTE_DUE, keys, promote_args)
                    self.scripts.queue_call(pipe, REAP, keys, REAP.argv(reap_args))
                    self.scripts.queue_call(pipe, EXPIRE, keys, expire_args)
                try:
                    results = await pipe.execute()
                except redis.exceptions.NoScriptError:
                    self.scripts.loaded = False  # Redis restarted empty: load again, retry
                    return [0] * len(queues), await self.now_ms(queues)
        waits, nows = [], []
        replies = iter(results)  # three per queue, in the order queued
        for queue, promoted, reaped, expired in zip(queues, replies, replies, replies, strict=True):
            reap = REAP.reply(reaped)
            self.metrics.reaped(queue, reap.stalled, reap.failed, reap.retried)
            wait = -1
            for done in (PROMOTE_DUE.reply(promoted), reap, EXPIRE.reply(expired)):
                if done.handled >= batch:
                    wait = 0
                elif done.next_due >= 0 and (wait < 0 or done.next_due - done.now < wait):
                    wait = max(0, done.next_due - done.now)
            waits.append(wait)
            nows.append(reap.now)
        return waits, nows

    async def redis_time_ms(self) -> int:
        """Redis' own clock, in ms since the epoch."""
        with redis_errors():
            seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def now_ms(self, queues: Sequence[str]) -> list[int]:
        """Per queue, "now" as its scripts read it: Redis' clock, moved forward by the queue's
        test clock on a broker with ``Settings.test_clock`` (lua/lib/test_clock.lua)."""
        now = await self.redis_time_ms()
        if not self.settings.test_clock:
            return [now] * len(queues)
        with redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                for queue in queues:
                    pipe.get(self.keys(queue).key("clock"))
                offsets = await pipe.execute()
        return [now + int(offset or 0) for offset in offsets]

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (*_UNAVAILABLE, redis.exceptions.RedisError) as exc:
            count_redis_error(exc)
            return False


def _token_suffix(tag: str) -> str:
    """What a call's lease tokens carry after their fence: the taker's tag, then random text."""
    return tag + os.urandom(8).hex()


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
