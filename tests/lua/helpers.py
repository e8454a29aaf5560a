"""Call the broker's Lua scripts on one queue of a real Redis, and read back what they wrote.

Every helper follows the script headers (KEYS, ARGV, output) literally, so a test reads as a
use of the script's contract. Replies are decoded from bytes to ``str``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis
from jobbroker_broker.keys import QueueKeys
from jobbroker_broker.scripts import Script, load_script
from redis.exceptions import NoScriptError

MAXLEN = 10_000
"""Events maxlen passed as ARGV[1] of every script."""

FIXED = 1
EXPONENTIAL = 2
"""Backoff types, as stored in the job's ``bt`` field (jobbroker.v1.BackoffType)."""

ERROR, TIMEOUT, EXPIRED, STALLED = "1", "2", "3", "4"
"""Failure reasons, as stored in the job's ``fr`` field (jobbroker.v1.FailureReason)."""

Arg = str | bytes | int | float


@functools.cache
def script(name: str) -> Script:
    """The expanded script ``name`` (loaded from the package once per test session)."""
    return load_script(name)


def decode(value: Any) -> Any:
    """Bytes to ``str``, recursively through lists; other values unchanged."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [decode(item) for item in value]
    return value


def num(value: float) -> str:
    """An optional number as the scripts take it: '' when unset (0)."""
    if not value:
        return ""
    if isinstance(value, float) and not value.is_integer():
        return repr(value)
    return str(int(value))


def retention(remove: bool = False, keep_last: int = 0, keep_age_ms: int = 0) -> str:
    """A retention policy string, as stored in the job's ``rc``/``rf`` fields."""
    return f"{int(remove)},{keep_last},{keep_age_ms}"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job of an ``add`` call: the 16 ARGV values of the add.lua header."""

    name: str = "job"
    data: str = '{"n": 1}'
    id: str = ""
    content_type: str = ""
    priority: int = 0
    lifo: bool = False
    delay_ms: int = 0
    attempts: int = 0
    backoff_type: int = 0
    backoff_ms: int = 0
    jitter: float = 0.0
    backoff_max_ms: int = 0
    timeout_ms: int = 0
    lifespan_ms: int = 0
    on_complete: str = ""
    on_fail: str = ""
    group: str = ""

    def argv(self) -> list[Arg]:
        return [
            self.id,
            self.name,
            self.data,
            self.content_type,
            num(self.priority),
            "1" if self.lifo else "",
            num(self.delay_ms),
            num(self.attempts),
            num(self.backoff_type),
            num(self.backoff_ms),
            num(self.jitter),
            num(self.backoff_max_ms),
            num(self.timeout_ms),
            num(self.lifespan_ms),
            self.on_complete,
            self.on_fail,
            self.group,
        ]


@dataclass(frozen=True, slots=True)
class Added:
    """One job of add.lua's output."""

    id: str
    state: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Leased:
    """One job of lease.lua's output (14 values)."""

    id: str
    name: str
    data: str
    content_type: str
    attempt: int
    max_attempts: int
    token: str
    fence: int
    lease_expiry: int
    timeout_at: int
    progress_percent: str
    progress_value: str
    progress_type: str
    wait_ms: int


@dataclass(frozen=True, slots=True)
class Update:
    """One update of a report.lua call."""

    id: str
    token: str
    lease_ms: int = 0
    percent: int | None = None
    value: str | None = None
    value_type: str = ""
    logs: Sequence[str] = ()

    def argv(self) -> list[Arg]:
        return [
            self.id,
            self.token,
            self.lease_ms,
            "" if self.percent is None else "1",
            "" if self.percent is None else self.percent,
            "" if self.value is None else "1",
            "" if self.value is None else self.value,
            self.value_type,
            len(self.logs),
            *self.logs,
        ]


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the queue's ``events`` stream."""

    id: str
    type: str
    job: str
    fields: dict[str, str]


class LuaQueue:
    """One queue of a real Redis, driven through the broker's scripts."""

    def __init__(self, r: redis.Redis, queue: str) -> None:
        self.r = r
        self.name = queue
        self.keys = QueueKeys(queue)

    # -- calling scripts -------------------------------------------------------------------------

    def call(self, name: str, *args: Arg) -> Any:
        """EVALSHA script ``name`` with its KEYS for this queue; the reply decoded."""
        loaded = script(name)
        keys = loaded.keys(self.keys)
        try:
            reply = self.r.evalsha(loaded.sha, len(keys), *keys, *args)
        except NoScriptError:
            assert self.r.script_load(loaded.source) == loaded.sha
            reply = self.r.evalsha(loaded.sha, len(keys), *keys, *args)
        return decode(reply)

    def add_raw(self, *specs: JobSpec, each: bool = False) -> list[Any]:
        """add.lua's output as it is; ``each``: every job on its own, else all or none."""
        argv: list[Arg] = [MAXLEN, len(specs), "1" if each else ""]
        for spec in specs:
            argv.extend(spec.argv())
        result: list[Any] = self.call("add", *argv)
        return result

    def add_all(self, *specs: JobSpec) -> list[Added]:
        out = self.add_raw(*specs)
        assert out[:1] != ["JOB_ID_CONFLICT"], out
        self.registered_now = out.pop() == 1  # the queue was not registered before this add
        return [Added(out[i], out[i + 1], out[i + 2] == 1) for i in range(0, len(out), 3)]

    def add(self, spec: JobSpec | None = None, **options: Any) -> Added:
        """Add one job: ``spec``, or a JobSpec built from ``options``."""
        (added,) = self.add_all(spec or JobSpec(**options))
        return added

    def lease(
        self, max_jobs: int = 1, worker: str = "w1", lease_ms: int = 30_000, rand: str = "r4nd"
    ) -> list[Leased]:
        out = self.lease_raw(max_jobs, worker, lease_ms, rand)
        self.held = out.pop()
        assert len(out) % 14 == 0, out
        return [Leased(*out[i : i + 14]) for i in range(0, len(out), 14)]

    def lease_raw(
        self, max_jobs: int = 1, worker: str = "w1", lease_ms: int = 30_000, rand: str = "r4nd"
    ) -> list[Any]:
        """lease.lua's output as it is: 14 values per job, then what held leasing back."""
        return list(self.call("lease", MAXLEN, max_jobs, worker, lease_ms, rand))

    def lease_one(self, **kwargs: Any) -> Leased:
        (leased,) = self.lease(**kwargs)
        return leased

    def report(self, *updates: Update, max_logs: int = 1_000) -> list[tuple[str, Any]]:
        argv: list[Arg] = [MAXLEN, len(updates), max_logs]
        for update in updates:
            argv.extend(update.argv())
        out = self.call("report", *argv)
        return [(out[i], out[i + 1]) for i in range(0, len(out), 2)]

    def complete_many(self, *jobs: tuple[str, str, str, str]) -> list[tuple[str, str]]:
        """Complete (id, token, result, result content type) for each job: (reason, state)."""
        return [row[:2] for row in self.complete_rows(*jobs)]

    def complete_rows(self, *jobs: tuple[str, str, str, str]) -> list[tuple[str, str, int]]:
        """complete.lua's rows as they are: reason, state, run ms."""
        argv: list[Arg] = [MAXLEN, len(jobs)]
        for job in jobs:
            argv.extend(job)
        out = self.call("complete", *argv)
        return [(out[i], out[i + 1], out[i + 2]) for i in range(0, len(out), 3)]

    def complete(
        self, job_id: str, token: str, result: str = '{"ok": true}', content_type: str = ""
    ) -> tuple[str, str]:
        (out,) = self.complete_many((job_id, token, result, content_type))
        return out

    def fail(
        self,
        job_id: str,
        token: str,
        message: str = "boom",
        error_type: str = "ValueError",
        stack: str = "Traceback ...",
        no_retry: bool = False,
        rand: float = 0.0,
    ) -> tuple[str, str, int]:
        out = self.call(
            "fail",
            MAXLEN,
            1,
            job_id,
            token,
            message,
            error_type,
            stack,
            "1" if no_retry else "",
            repr(rand),
        )
        assert len(out) == 4, out  # the fourth: run ms, for metrics
        return out[0], out[1], out[2]

    def release_many(self, *jobs: tuple[str, str, int]) -> list[tuple[str, str]]:
        """Release (id, token, delay ms) for each job."""
        argv: list[Arg] = [MAXLEN, len(jobs)]
        for job in jobs:
            argv.extend(job)
        out = self.call("release", *argv)
        return [(out[i], out[i + 1]) for i in range(0, len(out), 2)]

    def release(self, job_id: str, token: str, delay_ms: int = 0) -> tuple[str, str]:
        (out,) = self.release_many((job_id, token, delay_ms))
        return out

    def cancel(self, job_id: str, reason: str = "not needed") -> list[str]:
        result: list[str] = self.call("cancel", MAXLEN, job_id, reason)
        return result

    def promote(self, job_id: str) -> list[str]:
        result: list[str] = self.call("promote", MAXLEN, job_id)
        return result

    def promote_due(self, batch: int = 100) -> list[int]:
        result: list[int] = self.call("promote_due", MAXLEN, batch)
        return result

    def reap(self, batch: int = 100, max_stalled: int = 1, rand: float = 0.0) -> list[int]:
        result: list[int] = self.call("reap", MAXLEN, batch, max_stalled, repr(rand))
        return result

    def expire(self, batch: int = 100) -> list[int]:
        result: list[int] = self.call("expire", MAXLEN, batch)
        return result

    def retry(self, job_id: str) -> list[str]:
        result: list[str] = self.call("retry", MAXLEN, job_id)
        return result

    def remove(self, job_id: str) -> list[str]:
        result: list[str] = self.call("remove", MAXLEN, job_id)
        return result

    def get(self, job_id: str) -> list[Any]:
        result: list[Any] = self.call("get", job_id)
        return result

    def pause(self, paused: bool = True) -> int:
        result: int = self.call("pause", MAXLEN, "1" if paused else "")
        return result

    def drain(self, batch: int = 100, delayed: bool = False, before: int = 0) -> int:
        result: int = self.call("drain", MAXLEN, batch, "1" if delayed else "", before)
        return result

    def clean(
        self,
        state: str,
        grace_ms: int = 0,
        limit: int = 100,
        before: int = 0,
        cursor: int = 0,
        last: bool = False,
    ) -> tuple[int, list[str]]:
        """clean.lua's output: the next cursor (-1: done) and the removed ids."""
        out = self.call(
            "clean", MAXLEN, state, grace_ms, limit, before, cursor, "1" if last else ""
        )
        return out[0], out[1:]

    def obliterate(self, batch: int = 100, force: bool = False) -> int:
        result: int = self.call("obliterate", batch, "1" if force else "")
        return result

    def retry_failed(self, batch: int = 100) -> int:
        result: int = self.call("retry_failed", MAXLEN, batch)
        return result

    def promote_delayed(self, batch: int = 100) -> int:
        result: int = self.call("promote_delayed", MAXLEN, batch)
        return result

    def put_schedule(
        self, key: str, version: int = 1, next_run: int = 1_000, spec: JobSpec | None = None
    ) -> None:
        """Write a schedule the way schedule_store.py does: its hash and its ``schedules`` entry.

        The job template is ``spec`` (its id is not used: fire_schedule.lua makes one).
        """
        template = (spec or JobSpec()).argv()[1:]
        fields: dict[str, Arg] = {"v": version, "nr": next_run, "runs": 0}
        fields.update(zip(("name", "data", "dct"), template[:3], strict=True))
        fields.update({f"o{i}": value for i, value in enumerate(template[3:], start=1)})
        self.r.hset(self.keys.schedule(key), mapping=fields)
        self.r.zadd(self.keys.key("schedules"), {key: next_run or float("inf")})

    def schedule(self, key: str) -> dict[str, str]:
        """The schedule's hash ({} when it does not exist)."""
        raw = cast("dict[bytes, bytes]", self.r.hgetall(self.keys.schedule(key)))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def fire_schedule(
        self, key: str, version: int | str, occurrence: int | str, next_run: int | str = ""
    ) -> list[Any]:
        result: list[Any] = self.call(
            "fire_schedule", MAXLEN, key, str(version), str(occurrence), str(next_run)
        )
        return result

    def worker_seen(
        self, worker: str, queues: str, merge: bool = False, window_ms: int = 60_000
    ) -> int:
        result: int = self.call("worker_seen", worker, queues, "1" if merge else "0", window_ms)
        return result

    def list_workers(
        self, window_ms: int = 60_000, max_active: int = 10_000, max_prune: int = 1_000
    ) -> list[tuple[str, int, str, int]]:
        """list_workers.lua's output as (worker, last seen ms, queues, active jobs), by worker."""
        out = self.call("list_workers", window_ms, max_active, max_prune)
        rows = [(out[i], out[i + 1], out[i + 2], out[i + 3]) for i in range(0, len(out), 4)]
        return sorted(rows)

    def workers(self) -> dict[str, str]:
        """The queue's ``workers`` hash: worker id -> "<last seen ms>|<queues>"."""
        raw = cast("dict[bytes, bytes]", self.r.hgetall(self.keys.key("workers")))
        return {k.decode(): v.decode() for k, v in raw.items()}

    # -- reading state ---------------------------------------------------------------------------

    def now_ms(self) -> int:
        """Redis' clock, the one every script uses."""
        seconds, micros = self.r.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def job(self, job_id: str) -> dict[str, str]:
        """The job's hash ({} when it does not exist)."""
        raw = cast("dict[bytes, bytes]", self.r.hgetall(self.keys.job(job_id)))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def state(self, job_id: str) -> str | None:
        return self.job(job_id).get("st")

    def members(self, set_name: str) -> list[str]:
        """The members of one of the queue's sorted sets, lowest score first."""
        raw = cast("list[bytes]", self.r.zrange(self.keys.key(set_name), 0, -1))
        return [m.decode() for m in raw]

    def score(self, set_name: str, job_id: str) -> float | None:
        return self.r.zscore(self.keys.key(set_name), job_id)

    def where(self, job_id: str) -> list[str]:
        """Every one of the queue's job sets that holds ``job_id``."""
        sets = ("waiting", "delayed", "active", "completed", "failed", "cancelled", "expiring")
        return [name for name in sets if self.score(name, job_id) is not None]

    def logs(self, job_id: str) -> list[str]:
        raw = cast("list[bytes]", self.r.lrange(self.keys.logs(job_id), 0, -1))
        return [line.decode() for line in raw]

    def events(self, job_id: str | None = None, after: str = "-") -> list[Event]:
        """The queue's events (of one job when ``job_id`` is given), oldest first."""
        entries = self.r.xrange(self.keys.key("events"), after)
        raw = cast("list[tuple[bytes, dict[bytes, bytes]]]", entries)
        out = []
        for entry_id, entry in raw:
            fields = {k.decode(): v.decode() for k, v in entry.items()}
            event = Event(entry_id.decode(), fields.pop("e"), fields.pop("j"), fields)
            if (job_id is None or event.job == job_id) and event.id != after:
                out.append(event)
        return out

    def event_types(self, job_id: str | None = None, after: str = "-") -> list[str]:
        return [event.type for event in self.events(job_id, after)]

    def last_event_id(self) -> str:
        raw = cast("list[tuple[bytes, Any]]", self.r.xrevrange(self.keys.key("events"), count=1))
        return raw[0][0].decode() if raw else "-"

    def delete_all(self) -> None:
        """Delete every key of this queue (and only of this queue)."""
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.keys.prefix) + "*"
        names = list(self.r.scan_iter(match=pattern, count=1_000))
        assert all(name.startswith(self.keys.prefix.encode()) for name in names)
        if names:
            self.r.delete(*names)


def ids(jobs: Iterable[Added | Leased]) -> list[str]:
    return [job.id for job in jobs]
