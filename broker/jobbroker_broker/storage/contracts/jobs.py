"""Producers' and operators' scripts on one job: add, get, cancel, retry, promote, remove."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .base import Arg, Contract, Record, RowsAndThen, RowsThen

CONFLICT = b"JOB_ID_CONFLICT"
"""The state add.lua gives a job whose custom id names another job (an ErrorReason name)."""


class AddArgs(NamedTuple):
    maxlen: Arg
    job_count: int
    each: str
    """'1': each job on its own; '': all or none."""


class AddJob(NamedTuple):
    """One job of an add, as validation.new_job makes it."""

    id: str
    """The custom id; '' to generate one."""
    name: str
    data: bytes
    data_type: str
    options: Sequence[str | bytes]
    """The options set, as (job hash field, value) pairs flattened: by name, unset ones left
    out (contracts.hashes.JobField: PRIORITY, DELAY_MS...)."""


class Added(NamedTuple):
    id: bytes
    state: bytes
    """The job's state, or CONFLICT."""
    duplicate: int
    """1: an identical job had that custom id already, and was left as it was."""


@dataclass(frozen=True, slots=True)
class AddTail:
    registered: int
    """1: the queue was not in the registry (new, or obliterated since): the caller adds it."""


ADD: Contract[AddArgs, RowsThen[Added, AddTail]] = Contract(
    "add",
    ("prefix", "ids", "seq", "waiting", "delayed", "expiring", "events", "meta"),
    AddArgs,
    RowsAndThen("job", Added, AddTail),
    item=AddJob,
    per="job",
    counted_tail=True,
)


class JobArgs(NamedTuple):
    """The arguments of retry, promote and remove."""

    maxlen: Arg
    id: str


class CancelArgs(NamedTuple):
    maxlen: Arg
    id: str
    cancel_reason: str


@dataclass(frozen=True, slots=True)
class Transition:
    """A single-job transition's answer."""

    reason: bytes
    """'' when applied; else an ErrorReason name (JOB_NOT_FOUND...)."""
    state: bytes
    """The job's state after (or, refused, the state that refused it)."""


CANCEL: Contract[CancelArgs, Transition] = Contract(
    "cancel",
    ("prefix", "waiting", "delayed", "expiring", "cancelled", "events", "signals", "meta"),
    CancelArgs,
    Record(Transition),
)
RETRY: Contract[JobArgs, Transition] = Contract(
    "retry",
    ("prefix", "waiting", "failed", "cancelled", "expiring", "events", "seq"),
    JobArgs,
    Record(Transition),
)
PROMOTE: Contract[JobArgs, Transition] = Contract(
    "promote", ("prefix", "waiting", "delayed", "events", "seq"), JobArgs, Record(Transition)
)
REMOVE: Contract[JobArgs, Transition] = Contract(
    "remove",
    (
        "prefix",
        "waiting",
        "delayed",
        "completed",
        "failed",
        "cancelled",
        "expiring",
        "events",
        "meta",
    ),
    JobArgs,
    Record(Transition),
)


class GetArgs(NamedTuple):
    id: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    fields: list[bytes]
    """The job hash as a flat name, value list; empty when there is no such job."""
    log_count: int
    last_event_id: bytes
    """The newest event of the queue ('' = none), read in the same call."""

    def mapping(self) -> dict[bytes, bytes]:
        """The job hash as a dict."""
        return dict(zip(self.fields[::2], self.fields[1::2], strict=True))


GET: Contract[GetArgs, Snapshot] = Contract("get", ("prefix", "events"), GetArgs, Record(Snapshot))
