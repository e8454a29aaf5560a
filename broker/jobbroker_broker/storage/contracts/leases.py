"""Workers' scripts: lease, report (renewals, progress, logs), complete, fail, release."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .base import Arg, Contract, Record, Rows, RowsAndThen, RowsThen


class LeaseArgs(NamedTuple):
    maxlen: Arg
    max_jobs: int
    worker: str
    lease_ms: int
    token_suffix: str
    """Random text the tokens carry after their fence (and the caller's token id before)."""


class Leased(NamedTuple):
    id: bytes
    name: bytes
    data: bytes
    data_type: bytes
    attempt: int
    max_attempts: int
    token: bytes
    fence: int
    lease_expires_at: int
    timeout_at: int
    """0 without an attempt timeout."""
    progress_percent: bytes
    """'' when none was reported (progress survives a retry)."""
    progress_value: bytes
    progress_type: bytes
    wait_ms: int
    """For metrics: from creation (plus delay) to this first start; -1 for a later start."""
    trace_context: bytes
    """The job hash's trace context field ('' when the job was added without one)."""


@dataclass(frozen=True, slots=True)
class LeaseHeld:
    held: int
    """What held leasing back: 0 nothing, PAUSED, CONCURRENCY_FULL, or N > 0: the rate limit,
    for N more ms."""


PAUSED = -1
CONCURRENCY_FULL = -2

LEASE: Contract[LeaseArgs, RowsThen[Leased, LeaseHeld]] = Contract(
    "lease",
    (
        "prefix",
        "waiting",
        "active",
        "expiring",
        "failed",
        "events",
        "seq",
        "meta",
        "limiter",
        "groups",
    ),
    LeaseArgs,
    RowsAndThen("job", Leased, LeaseHeld),
)


class BatchArgs(NamedTuple):
    """The fixed arguments of complete, fail and release."""

    maxlen: Arg
    job_count: int


class CompleteItem(NamedTuple):
    id: str
    token: str
    result: bytes
    result_type: str


class FailItem(NamedTuple):
    id: str
    token: str
    message: str
    error_type: str
    stack: str
    no_retry: str
    """'1': fail for good whatever attempts are left."""
    rand: str
    """A random number in [0, 1), for the backoff's jitter."""


class ReleaseItem(NamedTuple):
    id: str
    token: str
    delay_ms: int


class Completed(NamedTuple):
    reason: bytes
    """'' when applied; else an ErrorReason name (LEASE_EXPIRED...)."""
    state: bytes
    run_ms: int
    """How long the attempt ran (lease to now), for metrics; 0 when refused."""


class Failed(NamedTuple):
    reason: bytes
    state: bytes
    run_at: int
    """When a retry with backoff runs (delayed), else 0."""
    run_ms: int


class Released(NamedTuple):
    reason: bytes
    state: bytes


COMPLETE: Contract[BatchArgs, list[Completed]] = Contract(
    "complete",
    ("prefix", "active", "completed", "cancelled", "events"),
    BatchArgs,
    Rows("job", Completed),
    item=CompleteItem,
    per="job",
)
FAIL: Contract[BatchArgs, list[Failed]] = Contract(
    "fail",
    ("prefix", "active", "waiting", "delayed", "failed", "cancelled", "events", "seq"),
    BatchArgs,
    Rows("job", Failed),
    item=FailItem,
    per="job",
)
RELEASE: Contract[BatchArgs, list[Released]] = Contract(
    "release",
    ("prefix", "active", "waiting", "delayed", "cancelled", "events"),
    BatchArgs,
    Rows("job", Released),
    item=ReleaseItem,
    per="job",
)


class CompleteLeaseArgs(NamedTuple):
    """The fixed arguments of complete_lease: lease's, then complete's job count."""

    maxlen: Arg
    max_jobs: int
    worker: str
    lease_ms: int
    token_suffix: str
    job_count: int


@dataclass(frozen=True, slots=True)
class CompletedAndLeased:
    completed: list[Any]
    """complete's reply (decode with ``COMPLETE.reply``)."""
    leased: list[Any]
    """lease's reply (decode with ``LEASE.reply``)."""


COMPLETE_LEASE: Contract[CompleteLeaseArgs, CompletedAndLeased] = Contract(
    "complete_lease",
    (
        "prefix",
        "active",
        "completed",
        "cancelled",
        "events",
        "waiting",
        "expiring",
        "failed",
        "seq",
        "meta",
        "limiter",
        "groups",
    ),
    CompleteLeaseArgs,
    Record(CompletedAndLeased),
    item=CompleteItem,
    per="job",
)

Outcome = CompleteItem | FailItem | ReleaseItem
"""One complete, fail or release of a leased job."""


class ReportArgs(NamedTuple):
    maxlen: Arg
    update_count: int
    max_logs: int
    """Log lines kept at most per job (the oldest go)."""


class ReportItem(NamedTuple):
    id: str
    token: str
    lease_ms: int
    """The renewal's duration; 0: the lease's last one."""
    has_percent: str
    percent: str
    has_value: str
    value: bytes
    value_type: str
    log_lines: Sequence[str]


class Reported(NamedTuple):
    reason: bytes
    """'' when applied; else an ErrorReason name."""
    value: bytes | int
    """Applied: the lease's new expiry (ms); refused: the job's state."""


REPORT: Contract[ReportArgs, list[Reported]] = Contract(
    "report",
    ("prefix", "active", "events"),
    ReportArgs,
    Rows("update", Reported),
    item=ReportItem,
    per="update",
    counted_tail=True,
)
