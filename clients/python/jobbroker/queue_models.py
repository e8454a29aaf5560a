"""Python-side types of the operators' calls: queues with their counts and settings, rate
limits, workers and repeatable jobs (schedules).

Durations are seconds (``float``) or :class:`datetime.timedelta`; the wire carries milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .models import Backoff, JobOptions, Keep, Retention, Seconds, decode, encode, ms
from .v1 import job_pb2, queue_service_pb2


def _time(value_ms: int) -> datetime | None:
    return datetime.fromtimestamp(value_ms / 1000, UTC) if value_ms else None


def _epoch_ms(value: datetime | None) -> int:
    return round(value.timestamp() * 1000) if value is not None else 0


def _seconds(value_ms: int) -> float | None:
    return value_ms / 1000 if value_ms else None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``max`` jobs start per ``per`` seconds."""

    max: int
    """Jobs per window (at least 1)."""
    per: Seconds
    """The window: seconds or a timedelta (1 ms to 1 day)."""

    def to_proto(self) -> queue_service_pb2.RateLimit:
        return queue_service_pb2.RateLimit(max=self.max, duration_ms=ms(self.per))

    @classmethod
    def from_proto(cls, message: queue_service_pb2.RateLimit) -> RateLimit | None:
        """The limit, or None for "no limit" (``max`` 0)."""
        return cls(message.max, message.duration_ms / 1000) if message.max else None

    def __str__(self) -> str:
        seconds = self.per.total_seconds() if isinstance(self.per, timedelta) else self.per
        return f"{self.max}/{seconds:g}s"


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """A queue's settings, enforced at lease time across every worker and broker replica."""

    rate_limit: RateLimit | None = None
    """Jobs of the queue that may start per window; rate-limited jobs wait, spending no attempt."""
    concurrency: int = 0
    """Most jobs of the queue active at once, across all workers; 0 means no limit."""
    group_rate_limit: RateLimit | None = None
    """Jobs of one group that may start per window, so one busy group cannot starve the others."""
    max_stalled: int = 0
    """Lease expiries a job survives before it fails with reason STALLED; 0: broker default."""

    def to_proto(self) -> queue_service_pb2.QueueSettings:
        settings = queue_service_pb2.QueueSettings(
            concurrency=self.concurrency, max_stalled=self.max_stalled
        )
        if self.rate_limit is not None:
            settings.rate_limit.CopyFrom(self.rate_limit.to_proto())
        if self.group_rate_limit is not None:
            settings.group_rate_limit.CopyFrom(self.group_rate_limit.to_proto())
        return settings

    @classmethod
    def from_proto(cls, message: queue_service_pb2.QueueSettings) -> QueueSettings:
        return cls(
            rate_limit=RateLimit.from_proto(message.rate_limit),
            concurrency=message.concurrency,
            group_rate_limit=RateLimit.from_proto(message.group_rate_limit),
            max_stalled=message.max_stalled,
        )


@dataclass(frozen=True, slots=True)
class JobCounts:
    """Number of a queue's jobs per state."""

    waiting: int = 0
    delayed: int = 0
    active: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return (
            self.waiting
            + self.delayed
            + self.active
            + self.completed
            + self.failed
            + self.cancelled
        )

    @classmethod
    def from_proto(cls, message: queue_service_pb2.JobCounts) -> JobCounts:
        return cls(
            waiting=message.waiting,
            delayed=message.delayed,
            active=message.active,
            completed=message.completed,
            failed=message.failed,
            cancelled=message.cancelled,
        )


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue: its counts, pause flag and settings."""

    name: str
    counts: JobCounts
    paused: bool
    settings: QueueSettings

    @classmethod
    def from_proto(cls, message: queue_service_pb2.QueueInfo) -> QueueInfo:
        return cls(
            name=message.name,
            counts=JobCounts.from_proto(message.counts),
            paused=message.paused,
            settings=QueueSettings.from_proto(message.settings),
        )


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker seen leasing from a queue recently."""

    worker_id: str
    host: str
    """The host the worker's id names (``host:pid:random`` ids), else empty."""
    queues: list[str]
    """The queues the worker leases from, as far as the queue's registry knows."""
    active_jobs: int
    """Jobs of the queue the worker holds a lease on."""
    last_seen: datetime | None

    @classmethod
    def from_proto(cls, message: queue_service_pb2.WorkerInfo) -> WorkerInfo:
        return cls(
            worker_id=message.worker_id,
            host=message.host,
            queues=list(message.queues),
            active_jobs=message.active_jobs,
            last_seen=_time(message.last_seen_ms),
        )


def _retention(policy: job_pb2.RetentionPolicy | None) -> Retention:
    if policy is None:
        return False
    if policy.remove:
        return True
    if policy.keep_age_ms:
        return Keep(last=policy.keep_last, age=policy.keep_age_ms / 1000)
    return policy.keep_last or False


def job_options_from_proto(message: job_pb2.JobOptions) -> JobOptions:
    """The :class:`JobOptions` a message carries (the inverse of ``JobOptions.to_proto``)."""
    backoff = None
    if message.HasField("backoff"):
        fixed = message.backoff.type == job_pb2.BACKOFF_TYPE_FIXED
        backoff = Backoff(
            "fixed" if fixed else "exponential",
            message.backoff.delay_ms / 1000,
            jitter=message.backoff.jitter,
            max_delay=_seconds(message.backoff.max_delay_ms),
        )
    return JobOptions(
        job_id=message.job_id or None,
        priority=message.priority,
        delay=_seconds(message.delay_ms),
        attempts=message.attempts or 1,
        backoff=backoff,
        timeout=_seconds(message.timeout_ms),
        lifespan=_seconds(message.lifespan_ms),
        remove_on_complete=_retention(
            message.remove_on_complete if message.HasField("remove_on_complete") else None
        ),
        remove_on_fail=_retention(
            message.remove_on_fail if message.HasField("remove_on_fail") else None
        ),
        lifo=message.lifo,
        group=message.group or None,
    )


@dataclass(frozen=True, slots=True)
class Schedule:
    """A repeatable job: a job added on a cron schedule, or every ``every`` seconds."""

    key: str
    """Unique per queue: 1-128 characters from ``[A-Za-z0-9._:-]``."""
    queue: str
    name: str
    """The name of each job."""
    data: Any = None
    """The data of each job (JSON-encodable, or :class:`~jobbroker.Raw`)."""
    options: JobOptions = field(default_factory=JobOptions)
    """The options of each job (no ``job_id`` nor ``delay``: each run gets its own id)."""
    cron: str = ""
    """Five fields, or six with seconds first; exactly one of ``cron`` and ``every`` is set."""
    timezone: str = ""
    """The IANA time zone ``cron`` is read in (empty: UTC)."""
    every: Seconds | None = None
    """Add a job every this many seconds (at least 1)."""
    limit: int = 0
    """Stop after this many jobs; 0: no limit."""
    start_at: datetime | None = None
    """No job before this time."""
    end_at: datetime | None = None
    """No job after this time."""
    next_run_at: datetime | None = None
    """Output only: when the next job will be added; None once the schedule has ended."""
    runs: int = 0
    """Output only: jobs added so far."""
    proto: queue_service_pb2.Schedule | None = field(default=None, repr=False, compare=False)
    """The message as received, for fields this class does not surface."""

    def to_proto(self) -> queue_service_pb2.Schedule:
        return queue_service_pb2.Schedule(
            key=self.key,
            queue=self.queue,
            name=self.name,
            data=encode(self.data),
            options=self.options.to_proto(),
            cron=self.cron,
            timezone=self.timezone,
            every_ms=ms(self.every),
            limit=self.limit,
            start_at_ms=_epoch_ms(self.start_at),
            end_at_ms=_epoch_ms(self.end_at),
        )

    @classmethod
    def from_proto(cls, message: queue_service_pb2.Schedule) -> Schedule:
        return cls(
            key=message.key,
            queue=message.queue,
            name=message.name,
            data=decode(message.data),
            options=job_options_from_proto(message.options),
            cron=message.cron,
            timezone=message.timezone,
            every=_seconds(message.every_ms),
            limit=message.limit,
            start_at=_time(message.start_at_ms),
            end_at=_time(message.end_at_ms),
            next_run_at=_time(message.next_run_at_ms),
            runs=message.runs,
            proto=message,
        )
