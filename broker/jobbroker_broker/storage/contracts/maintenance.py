"""Maintenance passes: promote due delayed jobs, reap expired leases, expire lifespans."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .base import Arg, Contract, Record


class PassArgs(NamedTuple):
    maxlen: Arg
    batch: int


class ReapArgs(NamedTuple):
    maxlen: Arg
    batch: int
    max_stalled: int
    """The broker's max-stalled count (the queue's own setting wins)."""
    rand: str
    """A random number in [0, 1), for the backoff's jitter."""


@dataclass(frozen=True, slots=True)
class Pass:
    """A bounded maintenance pass over one queue."""

    handled: int
    """Jobs moved (promote_due), reaped (reap) or expired (expire): as many as the batch
    means more are due now."""
    next_due: int
    """When the next job falls due, ms; -1: none."""
    now: int
    """Redis' clock, ms."""


@dataclass(frozen=True, slots=True)
class ReapPass(Pass):
    """Of the reaped jobs, for metrics: those that stalled, failed for good, or were retried."""

    stalled: int
    failed: int
    retried: int


PROMOTE_DUE: Contract[PassArgs, Pass] = Contract(
    "promote_due",
    ("prefix", "waiting", "delayed", "events", "seq", "meta", "groups"),
    PassArgs,
    Record(Pass),
)
REAP: Contract[ReapArgs, ReapPass] = Contract(
    "reap",
    (
        "prefix",
        "active",
        "waiting",
        "delayed",
        "failed",
        "cancelled",
        "events",
        "seq",
        "signals",
        "meta",
    ),
    ReapArgs,
    Record(ReapPass),
)
EXPIRE: Contract[PassArgs, Pass] = Contract(
    "expire",
    ("prefix", "waiting", "delayed", "expiring", "failed", "events", "meta"),
    PassArgs,
    Record(Pass),
)
