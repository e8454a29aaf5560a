"""Call the broker's Lua scripts on one queue of a real Redis, and read back what they wrote.

Every call goes through the script's contract (jobbroker_broker.storage.contracts): its
arguments are built, and its reply decoded, by name, as the broker does. Replies are decoded
from bytes to ``str`` first, so the reply dataclasses hold ``str`` where the broker sees
``bytes``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis
from jobbroker_broker.storage.contracts import Contract
from jobbroker_broker.storage.contracts import jobs as J
from jobbroker_broker.storage.contracts import leases as L
from jobbroker_broker.storage.contracts import maintenance as M
from jobbroker_broker.storage.contracts import queues as Q
from jobbroker_broker.storage.contracts import schedules as S
from jobbroker_broker.storage.contracts import workers as W
from jobbroker_broker.storage.contracts.hashes import JobField as F
from jobbroker_broker.storage.keys import QueueKeys
from jobbroker_broker.storage.scripts import Script, load_script
from redis.exceptions import NoScriptError

Added = J.Added
Leased = L.Leased

MAXLEN = 10_000
"""Events maxlen passed as ARGV[1] of every script."""

FIXED = 1
EXPONENTIAL = 2
"""Backoff types, as stored in the job's ``bt`` field (jobbroker.v1.BackoffType)."""

ERROR, TIMEOUT, EXPIRED, STALLED = "1", "2", "3", "4"
"""Failure reasons, as stored in the job's ``fr`` field (jobbroker.v1.FailureReason)."""

Arg = str | bytes | int | float
A = TypeVar("A", bound=tuple[Any, ...])
R = TypeVar("R")


@functools.cache
def script(name: str, test_clock: bool = False) -> Script:
    """The expanded script ``name`` (loaded from the package once per test session); with
    ``test_clock``, as a broker with Settings.test_clock loads it."""
    return load_script(name, test_clock)


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
    """One job of an ``add`` call, with its options as the broker's validation names them."""

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

    def item(self) -> J.AddJob:
        """The add script's job: options by name, unset ones left out."""
        options = {
            F.PRIORITY: num(self.priority),
            F.LIFO: "1" if self.lifo else "",
            F.DELAY_MS: num(self.delay_ms),
            F.ATTEMPTS: num(self.attempts),
            F.BACKOFF_TYPE: num(self.backoff_type),
            F.BACKOFF_DELAY_MS: num(self.backoff_ms),
            F.BACKOFF_JITTER: num(self.jitter),
            F.BACKOFF_MAX_MS: num(self.backoff_max_ms),
            F.TIMEOUT_MS: num(self.timeout_ms),
            F.LIFESPAN_MS: num(self.lifespan_ms),
            F.REMOVE_ON_COMPLETE: self.on_complete,
            F.REMOVE_ON_FAIL: self.on_fail,
            F.GROUP: self.group,
        }
        pairs = [item for field, value in options.items() if value for item in (field, value)]
        return J.AddJob(self.id, self.name, self.data, self.content_type, pairs)  # type: ignore[arg-type]


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

    def item(self) -> L.ReportItem:
        return L.ReportItem(
            id=self.id,
            token=self.token,
            lease_ms=self.lease_ms,
            has_percent="" if self.percent is None else "1",
            percent="" if self.percent is None else str(self.percent),
            has_value="" if self.value is None else "1",
            value=b"" if self.value is None else self.value.encode(),
            value_type=self.value_type,
            log_lines=self.logs,
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the queue's ``events`` stream."""

    id: str
    type: str
    job: str
    fields: dict[str, str]


class LuaQueue:
    """One queue of a real Redis, driven through the broker's scripts."""

    def __init__(self, r: redis.Redis, queue: str, test_clock: bool = False) -> None:
        self.r = r
        self.name = queue
        self.keys = QueueKeys(queue)
        self.test_clock = test_clock
        """Run the scripts as a broker with Settings.test_clock does."""

    # -- calling scripts -------------------------------------------------------------------------

    def run(self, contract: Contract[A, R], args: A, items: Iterable[tuple[Any, ...]] = ()) -> R:
        """EVALSHA the contract's script with its KEYS for this queue; the reply decoded."""
        return contract.reply(self.raw(contract, args, items))

    def raw(
        self, contract: Contract[A, Any], args: A, items: Iterable[tuple[Any, ...]] = ()
    ) -> Any:
        """The script's reply, only decoded to ``str``."""
        loaded = script(contract.name, self.test_clock)
        keys = loaded.keys(self.keys)
        argv = contract.argv(args, items)
        try:
            reply = self.r.evalsha(loaded.sha, len(keys), *keys, *argv)
        except NoScriptError:
            assert self.r.script_load(loaded.source) == loaded.sha
            reply = self.r.evalsha(loaded.sha, len(keys), *keys, *argv)
        return decode(reply)

    def add_reply(self, *specs: JobSpec, each: bool = False) -> J.RowsThen[J.Added, J.AddTail]:
        """add.lua's reply; ``each``: every job on its own, else all or none."""
        args = J.AddArgs(MAXLEN, len(specs), "1" if each else "")
        return self.run(J.ADD, args, [spec.item() for spec in specs])

    def add_all(self, *specs: JobSpec) -> list[Added]:
        reply = self.add_reply(*specs)
        assert [row.state for row in reply.rows] != ["JOB_ID_CONFLICT"], reply
        self.registered_now = reply.then.registered == 1  # not registered before this add
        return reply.rows

    def add(self, spec: JobSpec | None = None, **options: Any) -> Added:
        """Add one job: ``spec``, or a JobSpec built from ``options``."""
        (added,) = self.add_all(spec or JobSpec(**options))
        return added

    def lease(
        self, max_jobs: int = 1, worker: str = "w1", lease_ms: int = 30_000, rand: str = "r4nd"
    ) -> list[Leased]:
        reply = self.run(L.LEASE, L.LeaseArgs(MAXLEN, max_jobs, worker, lease_ms, rand))
        self.held = reply.then.held
        return reply.rows

    def lease_one(self, **kwargs: Any) -> Leased:
        (leased,) = self.lease(**kwargs)
        return leased

    def report(self, *updates: Update, max_logs: int = 1_000) -> list[tuple[str, Any]]:
        """(reason, lease expiry or job state) per update."""
        args = L.ReportArgs(MAXLEN, len(updates), max_logs)
        rows = self.run(L.REPORT, args, [update.item() for update in updates])
        return [(row.reason, row.value) for row in rows]

    def complete_many(self, *jobs: tuple[str, str, str, str]) -> list[tuple[str, str]]:
        """Complete (id, token, result, result content type) for each job: (reason, state)."""
        return [(row.reason, row.state) for row in self.complete_rows(*jobs)]

    def complete_rows(self, *jobs: tuple[str, str, str, str]) -> list[L.Completed]:
        """complete.lua's rows as they are: reason, state, run ms."""
        items = [L.CompleteItem(*job) for job in jobs]
        return self.run(L.COMPLETE, L.BatchArgs(MAXLEN, len(items)), items)

    def complete(
        self, job_id: str, token: str, result: str = '{"ok": true}', content_type: str = ""
    ) -> tuple[str, str]:
        (out,) = self.complete_many((job_id, token, result, content_type))
        return out

    def complete_lease(
        self,
        *jobs: tuple[str, str, str, str],
        max_jobs: int = 1,
        worker: str = "w1",
        lease_ms: int = 30_000,
        rand: str = "r4nd",
    ) -> tuple[list[L.Completed], list[Leased]]:
        """complete_lease.lua: complete (id, token, result, result content type) for each job,
        then lease up to ``max_jobs``; complete.lua's rows and lease.lua's (``held`` kept)."""
        items = [L.CompleteItem(*job) for job in jobs]
        args = L.CompleteLeaseArgs(MAXLEN, max_jobs, worker, lease_ms, rand, len(items))
        reply = self.run(L.COMPLETE_LEASE, args, items)
        leased = L.LEASE.reply(reply.leased)
        self.held = leased.then.held
        return L.COMPLETE.reply(reply.completed), leased.rows

    def fail_row(
        self,
        job_id: str,
        token: str,
        message: str = "boom",
        error_type: str = "ValueError",
        stack: str = "Traceback ...",
        no_retry: bool = False,
        rand: float = 0.0,
    ) -> L.Failed:
        """fail.lua's row for one job, as it is: reason, state, run at, run ms."""
        item = L.FailItem(
            job_id, token, message, error_type, stack, "1" if no_retry else "", repr(rand)
        )
        (row,) = self.run(L.FAIL, L.BatchArgs(MAXLEN, 1), [item])
        return row

    def fail(self, job_id: str, token: str, *args: Any, **kwargs: Any) -> tuple[str, str, int]:
        """(reason, state, run at) of failing one job's attempt (arguments as fail_row's)."""
        row = self.fail_row(job_id, token, *args, **kwargs)
        return row.reason, row.state, row.run_at

    def release_many(self, *jobs: tuple[str, str, int]) -> list[tuple[str, str]]:
        """Release (id, token, delay ms) for each job."""
        items = [L.ReleaseItem(*job) for job in jobs]
        rows = self.run(L.RELEASE, L.BatchArgs(MAXLEN, len(items)), items)
        return [(row.reason, row.state) for row in rows]

    def release(self, job_id: str, token: str, delay_ms: int = 0) -> tuple[str, str]:
        (out,) = self.release_many((job_id, token, delay_ms))
        return out

    def cancel(self, job_id: str, reason: str = "not needed") -> tuple[str, str]:
        """(reason, state) of cancel.lua's reply."""
        return pair(self.run(J.CANCEL, J.CancelArgs(MAXLEN, job_id, reason)))

    def promote(self, job_id: str) -> tuple[str, str]:
        return pair(self.run(J.PROMOTE, J.JobArgs(MAXLEN, job_id)))

    def promote_due(self, batch: int = 100) -> M.Pass:
        return self.run(M.PROMOTE_DUE, M.PassArgs(MAXLEN, batch))

    def reap(self, batch: int = 100, max_stalled: int = 1, rand: float = 0.0) -> M.ReapPass:
        return self.run(M.REAP, M.ReapArgs(MAXLEN, batch, max_stalled, repr(rand)))

    def expire(self, batch: int = 100) -> M.Pass:
        return self.run(M.EXPIRE, M.PassArgs(MAXLEN, batch))

    def retry(self, job_id: str) -> tuple[str, str]:
        return pair(self.run(J.RETRY, J.JobArgs(MAXLEN, job_id)))

    def remove(self, job_id: str) -> tuple[str, str]:
        return pair(self.run(J.REMOVE, J.JobArgs(MAXLEN, job_id)))

    def get(self, job_id: str) -> J.Snapshot:
        return self.run(J.GET, J.GetArgs(job_id))

    def pause(self, paused: bool = True) -> int:
        return self.run(Q.PAUSE, Q.PauseArgs(MAXLEN, "1" if paused else ""))

    def drain(self, batch: int = 100, delayed: bool = False, before: int = 0) -> int:
        return self.run(Q.DRAIN, Q.DrainArgs(MAXLEN, batch, "1" if delayed else "", before))

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
        args = Q.CleanArgs(MAXLEN, state, grace_ms, limit, before, cursor, "1" if last else "")
        cleaned = self.run(Q.CLEAN, args)
        return cleaned.cursor, cleaned.removed

    def obliterate(self, batch: int = 100, force: bool = False) -> int:
        return self.run(Q.OBLITERATE, Q.ObliterateArgs(batch, "1" if force else ""))

    def retry_failed(self, batch: int = 100) -> int:
        return self.run(Q.RETRY_FAILED, Q.BulkArgs(MAXLEN, batch))

    def promote_delayed(self, batch: int = 100) -> int:
        return self.run(Q.PROMOTE_DELAYED, Q.BulkArgs(MAXLEN, batch))

    def put_schedule(
        self, key: str, version: int = 1, next_run: int = 1_000, spec: JobSpec | None = None
    ) -> None:
        """Write a schedule the way schedule_store.py does: its hash and its ``schedules`` entry.

        The job template is ``spec`` (its id is not used: fire_schedule.lua makes one).
        """
        fields: dict[str, Any] = {"v": version, "nr": next_run, "runs": 0}
        fields.update(S.template((spec or JobSpec()).item()))
        self.r.hset(self.keys.schedule(key), mapping=fields)
        self.r.zadd(self.keys.key("schedules"), {key: next_run or float("inf")})

    def schedule(self, key: str) -> dict[str, str]:
        """The schedule's hash ({} when it does not exist)."""
        raw = cast("dict[bytes, bytes]", self.r.hgetall(self.keys.schedule(key)))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def fire_schedule(
        self, key: str, version: int | str, occurrence: int | str, next_run: int | str = ""
    ) -> S.Fired:
        args = S.FireArgs(MAXLEN, key, str(version), str(occurrence), str(next_run))
        return self.run(S.FIRE_SCHEDULE, args)

    def worker_seen(
        self, worker: str, queues: str, merge: bool = False, window_ms: int = 60_000
    ) -> int:
        return self.run(W.WORKER_SEEN, W.SeenArgs(worker, queues, "1" if merge else "0", window_ms))

    def list_workers(
        self, window_ms: int = 60_000, max_active: int = 10_000, max_prune: int = 1_000
    ) -> list[tuple[str, int, str, int]]:
        """list_workers.lua's output as (worker, last seen ms, queues, active jobs), by worker."""
        rows = self.run(W.LIST_WORKERS, W.ListArgs(window_ms, max_active, max_prune))
        return sorted((row.worker, row.last_seen, row.queues, row.active_jobs) for row in rows)

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


def pair(done: J.Transition) -> tuple[str, str]:
    """A single-job transition's (reason, state)."""
    return done.reason, done.state  # type: ignore[return-value]  # decoded to str


def handled_next(done: M.Pass) -> tuple[int, int]:
    """A maintenance pass' (handled, next_due)."""
    return done.handled, done.next_due


def ids(jobs: Iterable[Added | Leased]) -> list[str]:
    return [job.id for job in jobs]
