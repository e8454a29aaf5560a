"""Repeatable jobs: fire one occurrence of a schedule (fire_schedule.lua)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .base import Arg, Contract, Record
from .hashes import JobField
from .jobs import AddJob


class FireArgs(NamedTuple):
    maxlen: Arg
    key: str
    version: str
    """The schedule's version (field v) the caller read."""
    occurrence: str
    """The next run (field nr) the caller read: the occurrence to fire."""
    next_run: str
    """The run after it, which the caller computed; '' ends the schedule."""


@dataclass(frozen=True, slots=True)
class Fired:
    fired: int
    """0: the schedule is gone or moved on (another replica fired it, an upsert changed it);
    the other values are then '' and 0."""
    id: bytes
    state: bytes
    duplicate: int


FIRE_SCHEDULE: Contract[FireArgs, Fired] = Contract(
    "fire_schedule",
    ("prefix", "seq", "waiting", "delayed", "expiring", "events", "schedules"),
    FireArgs,
    Record(Fired),
)

TEMPLATE_OPTIONS = (
    JobField.PRIORITY,
    JobField.LIFO,
    JobField.DELAY_MS,
    JobField.ATTEMPTS,
    JobField.BACKOFF_TYPE,
    JobField.BACKOFF_DELAY_MS,
    JobField.BACKOFF_JITTER,
    JobField.BACKOFF_MAX_MS,
    JobField.TIMEOUT_MS,
    JobField.LIFESPAN_MS,
    JobField.REMOVE_ON_COMPLETE,
    JobField.REMOVE_ON_FAIL,
    JobField.GROUP,
)
"""The options of a schedule's job template, kept in its hash as ``o1``..``o13`` in this order
('' when unset); fire_schedule.lua reads them in the same order (its TEMPLATE_OPTIONS)."""


def template(job: AddJob) -> dict[str, str | bytes]:
    """The job template fields of a schedule hash, from a validated job (its id unused)."""
    options = dict(zip(job.options[::2], job.options[1::2], strict=True))
    fields: dict[str, str | bytes] = {"name": job.name, "data": job.data, "dct": job.data_type}
    for i, name in enumerate(TEMPLATE_OPTIONS, start=1):
        fields[f"o{i}"] = options.get(name, "")
    return fields
