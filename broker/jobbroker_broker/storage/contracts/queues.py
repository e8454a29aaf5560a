"""Queue-wide scripts: pause, drain, clean, obliterate, and the bulk moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from .base import REST, Arg, Contract, Record, Scalar


class PauseArgs(NamedTuple):
    maxlen: Arg
    paused: str
    """'1' to pause, '' to resume."""


PAUSE: Contract[PauseArgs, int] = Contract(
    "pause", ("prefix", "meta", "events"), PauseArgs, Scalar("changed", int)
)


class DrainArgs(NamedTuple):
    maxlen: Arg
    batch: int
    delayed: str
    """'1' to drain delayed jobs too."""
    removed_before: int
    """Jobs the previous calls of this drain removed (for the final event's count)."""


DRAIN: Contract[DrainArgs, int] = Contract(
    "drain",
    ("prefix", "waiting", "delayed", "expiring", "events", "meta", "groups"),
    DrainArgs,
    Scalar("removed", int),
)


class CleanArgs(NamedTuple):
    maxlen: Arg
    state: str
    grace_ms: int
    limit: int
    removed_before: int
    cursor: int
    last: str
    """'1' when this call's removals reach the caller's limit."""


@dataclass(frozen=True, slots=True)
class Cleaned:
    cursor: int
    """Where the next call goes on; -1: done."""
    removed: list[bytes] = field(metadata=REST)


CLEAN: Contract[CleanArgs, Cleaned] = Contract(
    "clean",
    ("prefix", "waiting", "delayed", "completed", "failed", "cancelled", "expiring", "events"),
    CleanArgs,
    Record(Cleaned),
)


class ObliterateArgs(NamedTuple):
    batch: int
    force: str
    """'1' to obliterate even with active jobs."""


REFUSED = -1
"""obliterate.lua's answer while jobs are active (and not forced)."""

OBLITERATE: Contract[ObliterateArgs, int] = Contract(
    "obliterate",
    (
        "prefix",
        "waiting",
        "delayed",
        "active",
        "completed",
        "failed",
        "cancelled",
        "expiring",
        "ids",
        "seq",
        "events",
        "signals",
        "meta",
        "limiter",
        "schedules",
        "workers",
        "groups",
    ),
    ObliterateArgs,
    Scalar("removed", int),
)


class BulkArgs(NamedTuple):
    maxlen: Arg
    batch: int


RETRY_FAILED: Contract[BulkArgs, int] = Contract(
    "retry_failed",
    ("prefix", "waiting", "failed", "expiring", "events", "seq"),
    BulkArgs,
    Scalar("moved", int),
)
PROMOTE_DELAYED: Contract[BulkArgs, int] = Contract(
    "promote_delayed",
    ("prefix", "waiting", "delayed", "events", "seq"),
    BulkArgs,
    Scalar("moved", int),
)
