"""Python-side types: job options in, jobs and events out, payloads encoded as JSON for you.

Durations are seconds (``float``) or :class:`datetime.timedelta`; the wire carries whole
milliseconds (rounded to the nearest).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from .errors import InvalidArgument
from .limits import MAX_ATTEMPTS, MAX_DURATION_MS, MAX_PRIORITY, MAX_UINT32
from .v1 import events_pb2, job_pb2

JSON = "application/json"
Seconds = float | timedelta


class JobState(enum.StrEnum):
    """The state a job is in."""

    WAITING = "waiting"
    DELAYED = "delayed"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)

    def to_proto(self) -> job_pb2.JobState.ValueType:
        return job_pb2.JobState.Value(f"JOB_STATE_{self.name}")

    @classmethod
    def from_proto(cls, value: int) -> JobState | None:
        name = job_pb2.JobState.Name(value).removeprefix("JOB_STATE_")  # type: ignore[arg-type]
        return None if name == "UNSPECIFIED" else cls[name]


class EventType(enum.StrEnum):
    """What an event reports (see ``events.proto``)."""

    ADDED = "added"
    WAITING = "waiting"
    DELAYED = "delayed"
    ACTIVE = "active"
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRIES_EXHAUSTED = "retries-exhausted"
    STALLED = "stalled"
    CANCELLED = "cancelled"
    CANCEL_REQUESTED = "cancel-requested"
    REMOVED = "removed"
    DUPLICATED = "duplicated"
    RELEASED = "released"
    PAUSED = "paused"
    RESUMED = "resumed"
    CLEANED = "cleaned"
    PURGED = "purged"
    """An operator's drain (``DrainQueue``, ``jobbroker queue drain``) removed waiting jobs."""
    DRAINED = "drained"
    """BullMQ's ``drained``: workers took the last waiting job, the queue ran empty."""
    GAP = "gap"
    """Not an event of the queue: ``watch_events`` says that events were lost here (the queue
    trimmed them before they were delivered); ``count`` is how many, 0 when unknown."""
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Raw:
    """A payload that is not JSON: bytes with their MIME type, carried as they are."""

    body: bytes
    content_type: str = "application/octet-stream"


def invalid(field: str, problem: str) -> InvalidArgument:
    """The error the broker answers for a bad request field, raised before the call."""
    return InvalidArgument(f"{field}: {problem}", metadata={"field": field})


def _seconds(value: Seconds, field: str) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(field, f"must be seconds (a number) or a timedelta, not {value!r}")
    return float(value)


def _check_wait(value: Seconds | None, field: str) -> None:
    """A wait (delay, backoff delay): None or 0 for none, up to ten years."""
    if value is None:
        return
    seconds = _seconds(value, field)
    if not seconds >= 0:  # NaN too
        raise invalid(field, f"must not be negative (got {value!r})")
    if round(seconds * 1000) > MAX_DURATION_MS:
        raise invalid(field, f"must be at most {MAX_DURATION_MS} ms (ten years)")


def _check_limit(value: Seconds | None, field: str, unset: str) -> None:
    """A time limit (timeout, lifespan, age): None for none, else at least 1 ms. The wire's 0
    means "none", so a shorter limit would silently become no limit at all."""
    if value is None:
        return
    _check_wait(value, field)
    if _seconds(value, field) < 0.001:
        raise invalid(
            field,
            f"must be at least 1 ms, the broker's resolution (got {value!r}; {unset})",
        )


def _check_whole(value: int, field: str, low: int, high: int, problem: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(field, f"{problem} (got {value!r})")


def ms(value: Seconds | None) -> int:
    """Seconds or a timedelta as whole milliseconds (None and 0 mean "not set")."""
    if value is None:
        return 0
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"a duration must not be negative (got {value!r})")
    return round(seconds * 1000)


def encode(value: Any) -> job_pb2.Payload:
    """A Python value as a payload: :class:`Raw` as is, anything else as JSON."""
    if isinstance(value, Raw):
        return job_pb2.Payload(body=value.body, content_type=value.content_type)
    if value is None:
        return job_pb2.Payload()
    return job_pb2.Payload(body=orjson.dumps(value))


def decode(payload: job_pb2.Payload) -> Any:
    """A payload as a Python value: JSON decoded, other types as :class:`Raw`, empty as None."""
    content_type = payload.content_type
    if content_type and content_type.split(";", 1)[0].strip().lower() != JSON:
        return Raw(payload.body, content_type)
    if not payload.body:
        return None
    return orjson.loads(payload.body)


def _time(value_ms: int) -> datetime | None:
    return datetime.fromtimestamp(value_ms / 1000, UTC) if value_ms else None


@dataclass(frozen=True, slots=True)
class Backoff:
    """The wait before each retry."""

    type: Literal["fixed", "exponential"]
    """``fixed``: every retry waits ``delay``; ``exponential``: retry n waits delay * 2^(n-1)."""
    delay: Seconds
    """Base delay."""
    jitter: float = 0.0
    """0-1: each delay is drawn from [d * (1 - jitter), d]."""
    max_delay: Seconds | None = None
    """Upper bound on any one delay."""

    def check(self, field: str) -> None:
        """Raise :class:`~jobbroker.InvalidArgument` for a value the broker would refuse."""
        if self.type not in ("fixed", "exponential"):
            raise invalid(f"{field}.type", f"must be 'fixed' or 'exponential' (got {self.type!r})")
        _check_wait(self.delay, f"{field}.delay_ms")
        if not 0.0 <= self.jitter <= 1.0:  # NaN too
            raise invalid(f"{field}.jitter", f"must be between 0 and 1 (got {self.jitter!r})")
        _check_limit(self.max_delay, f"{field}.max_delay_ms", "leave it unset for no cap")

    def to_proto(self) -> job_pb2.Backoff:
        kind = (
            job_pb2.BACKOFF_TYPE_FIXED if self.type == "fixed" else job_pb2.BACKOFF_TYPE_EXPONENTIAL
        )
        return job_pb2.Backoff(
            type=kind, delay_ms=ms(self.delay), jitter=self.jitter, max_delay_ms=ms(self.max_delay)
        )


@dataclass(frozen=True, slots=True)
class Keep:
    """What to keep of finished jobs: the last ``last`` ones and/or those younger than ``age``."""

    last: int = 0
    age: Seconds | None = None


Retention = bool | int | Keep
"""``True``: remove at once; ``False``: keep (default); an int N: keep the last N (0: keep none,
like ``True``); :class:`Keep`."""


def _check_retention(value: Retention, field: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        _check_whole(value, f"{field}.keep_last", 0, MAX_UINT32, "must be 0 or more")
        return
    if not isinstance(value, Keep):
        raise invalid(field, f"must be True, False, a count or a Keep (got {value!r})")
    _check_whole(value.last, f"{field}.keep_last", 0, MAX_UINT32, "must be 0 or more")
    _check_limit(value.age, f"{field}.keep_age_ms", "leave it unset for no age limit")
    if not value.last and value.age is None:
        raise invalid(field, "Keep() needs last=N and/or age=...; True removes at once")


def _retention(value: Retention | None) -> job_pb2.RetentionPolicy | None:
    if value is None or value is False:
        return None
    if value is True or value == 0:  # keeping the last 0 is removing at once
        return job_pb2.RetentionPolicy(remove=True)
    if isinstance(value, int):
        return job_pb2.RetentionPolicy(keep_last=value)
    return job_pb2.RetentionPolicy(keep_last=value.last, keep_age_ms=ms(value.age))


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Options of one job, Bull's full list. Every field is optional.

    A value the broker would refuse, or one the wire would turn into something else (a
    negative delay, ``attempts=0``, a timeout under the broker's 1 ms resolution), raises
    :class:`~jobbroker.InvalidArgument` at once, naming the field as the broker would
    (``options.priority``).
    """

    job_id: str | None = None
    """Idempotent add: the same id with the same name and data returns the existing job."""
    priority: int = 0
    """1 (highest) to 1,000,000; 0 (default) = unprioritized, served before prioritized jobs."""
    delay: Seconds | None = None
    """Wait this long before the job becomes waiting."""
    attempts: int = 1
    """Total attempts, the first included: 1 to 10,000."""
    backoff: Backoff | None = None
    """The wait before each retry; default: retry at once."""
    timeout: Seconds | None = None
    """How long one attempt may run (at least 1 ms; None: no limit); the worker is told to
    stop and the attempt fails."""
    lifespan: Seconds | None = None
    """A job not started within this time of its creation fails with reason EXPIRED (at least
    1 ms; None: no limit)."""
    remove_on_complete: Retention = False
    """What to keep once the job completed."""
    remove_on_fail: Retention = False
    """What to keep once the job failed for good or was cancelled."""
    lifo: bool = False
    """Serve before the jobs of the same priority already waiting."""
    group: str | None = None
    """A group key (a tenant, a user): the queue's group rate limit applies per group."""

    def __post_init__(self) -> None:
        self.check()

    def check(self, field: str = "options") -> None:
        """Raise :class:`~jobbroker.InvalidArgument` for a value the broker would refuse or
        that would not reach it as given; ``field`` prefixes the field names."""
        _check_whole(
            self.priority,
            f"{field}.priority",
            0,
            MAX_PRIORITY,
            f"must be 0 (none) or 1-{MAX_PRIORITY}",
        )
        # The wire's 0 means "not set", which the broker reads as 1: say so instead.
        _check_whole(
            self.attempts,
            f"{field}.attempts",
            1,
            MAX_ATTEMPTS,
            f"must be 1-{MAX_ATTEMPTS} (the first attempt included)",
        )
        _check_wait(self.delay, f"{field}.delay_ms")
        _check_limit(self.timeout, f"{field}.timeout_ms", "leave it unset for no timeout")
        _check_limit(self.lifespan, f"{field}.lifespan_ms", "leave it unset for no lifespan")
        if self.backoff is not None:
            if not isinstance(self.backoff, Backoff):
                raise invalid(f"{field}.backoff", f"must be a Backoff (got {self.backoff!r})")
            self.backoff.check(f"{field}.backoff")
        _check_retention(self.remove_on_complete, f"{field}.remove_on_complete")
        _check_retention(self.remove_on_fail, f"{field}.remove_on_fail")

    def to_proto(self) -> job_pb2.JobOptions:
        opts = job_pb2.JobOptions(
            job_id=self.job_id or "",
            priority=self.priority,
            delay_ms=ms(self.delay),
            attempts=self.attempts,
            timeout_ms=ms(self.timeout),
            lifespan_ms=ms(self.lifespan),
            lifo=self.lifo,
            group=self.group or "",
        )
        if self.backoff is not None:
            opts.backoff.CopyFrom(self.backoff.to_proto())
        for name, value in (
            ("remove_on_complete", self.remove_on_complete),
            ("remove_on_fail", self.remove_on_fail),
        ):
            policy = _retention(value)
            if policy is not None:
                getattr(opts, name).CopyFrom(policy)
        return opts


@dataclass(frozen=True, slots=True)
class Progress:
    """A worker's last reported progress."""

    percent: float | None = None
    value: Any = None

    @classmethod
    def from_proto(cls, message: job_pb2.Progress) -> Progress:
        percent = message.percent if message.HasField("percent") else None
        value = decode(message.value) if message.HasField("value") else None
        return cls(percent, value)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an attempt or a job failed."""

    reason: str
    """ERROR, TIMEOUT, EXPIRED or STALLED."""
    message: str
    error_type: str = ""
    stack: str = ""
    attempt: int = 0

    @classmethod
    def from_proto(cls, message: job_pb2.Failure) -> Failure:
        return cls(
            reason=job_pb2.FailureReason.Name(message.reason).removeprefix("FAILURE_REASON_"),
            message=message.message,
            error_type=message.error_type,
            stack=message.stack,
            attempt=message.attempt,
        )


@dataclass(frozen=True, slots=True)
class Job:
    """A job's snapshot."""

    id: str
    queue: str
    name: str
    state: JobState
    data: Any
    attempts_made: int
    max_attempts: int
    progress: Progress
    result: Any = None
    failure: Failure | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    run_at: datetime | None = None
    worker_id: str = ""
    lease_expires_at: datetime | None = None
    cancel_requested: bool = False
    cancel_reason: str = ""
    stalled_count: int = 0
    log_count: int = 0
    proto: job_pb2.Job | None = field(default=None, repr=False, compare=False)
    """The message as received, for fields this class does not surface."""

    @classmethod
    def from_proto(cls, job: job_pb2.Job) -> Job:
        state = JobState.from_proto(job.state)
        return cls(
            id=job.id,
            queue=job.queue,
            name=job.name,
            state=state or JobState.WAITING,
            data=decode(job.data),
            attempts_made=job.attempts_made,
            max_attempts=job.options.attempts or 1,
            progress=Progress.from_proto(job.progress),
            result=decode(job.result) if job.HasField("result") else None,
            failure=Failure.from_proto(job.failure) if job.HasField("failure") else None,
            created_at=_time(job.created_at_ms),
            started_at=_time(job.started_at_ms),
            finished_at=_time(job.finished_at_ms),
            run_at=_time(job.run_at_ms),
            worker_id=job.worker_id,
            lease_expires_at=_time(job.lease_expires_at_ms),
            cancel_requested=job.cancel_requested,
            cancel_reason=job.cancel_reason,
            stalled_count=job.stalled_count,
            log_count=job.log_count,
            proto=job,
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a queue's event stream."""

    id: str
    type: EventType
    queue: str
    job_id: str
    timestamp: datetime | None
    state: JobState | None = None
    attempt: int = 0
    progress: Progress | None = None
    result: Any = None
    failure: Failure | None = None
    run_at: datetime | None = None
    worker_id: str = ""
    count: int = 0
    """For queue events CLEANED and PURGED: how many jobs were removed; for GAP, how many
    events were lost (0 when the broker cannot tell)."""
    final: bool = False
    """Whether the job's progress stream ends with this event (the job finished or was
    removed), as the broker says."""

    @classmethod
    def from_proto(cls, event: events_pb2.JobEvent) -> Event:
        name = events_pb2.EventType.Name(event.type).removeprefix("EVENT_TYPE_")
        kind = EventType[name] if name in EventType.__members__ else EventType.UNKNOWN
        return cls(
            id=event.event_id,
            type=kind,
            queue=event.queue,
            job_id=event.job_id,
            timestamp=_time(event.timestamp_ms),
            state=JobState.from_proto(event.state),
            attempt=event.attempt,
            progress=Progress.from_proto(event.progress) if event.HasField("progress") else None,
            result=decode(event.result) if event.HasField("result") else None,
            failure=Failure.from_proto(event.failure) if event.HasField("failure") else None,
            run_at=_time(event.run_at_ms),
            worker_id=event.worker_id,
            count=event.count,
            final=event.final,
        )


@dataclass(frozen=True, slots=True)
class Added:
    """The answer to an add."""

    job_id: str
    state: JobState
    duplicate: bool = False
    """True when a custom job id named an existing identical job: nothing was added."""
