"""Who may call what: roles, the permission each method needs, and the caller of this call.

Roles, each granted per queue pattern:

- ``read``: status, lists, logs, progress and event streams, queue and worker views;
- ``producer``: what ``read`` may, plus Add, AddBulk and Cancel;
- ``worker``: Lease, ReportProgress, Complete, Fail and Release, and SetJobSchema;
- ``admin``: everything: queue operations, schedules, Retry, Promote, Remove, and the above.

A lease is bound to the token that took it: the lease token carries the taker's token id, and
every report on the lease is refused unless it comes from that same token.
"""

from __future__ import annotations

import contextvars
import fnmatch
from dataclasses import dataclass
from typing import Any

from ..errors import PermissionDenied

READ, PRODUCE, WORK, ADMIN = "read", "produce", "work", "admin"
ROLES: dict[str, frozenset[str]] = {
    "read": frozenset({READ}),
    "producer": frozenset({READ, PRODUCE}),
    "worker": frozenset({WORK}),
    "admin": frozenset({READ, PRODUCE, WORK, ADMIN}),
}

_JOBS = "/jobbroker.v1.JobService/"
_WORKERS = "/jobbroker.v1.WorkerService/"
_QUEUES = "/jobbroker.v1.QueueService/"
METHODS: dict[str, str] = {
    **{_JOBS + m: READ for m in ("GetStatus", "StreamProgress", "ListJobs", "GetLogs")},
    **{_JOBS + m: PRODUCE for m in ("Add", "AddBulk", "Cancel")},
    **{_JOBS + m: ADMIN for m in ("Retry", "Promote", "Remove")},
    **{_WORKERS + m: WORK for m in ("Lease", "ReportProgress", "Complete", "Fail", "Release")},
    # A worker declares the data its handlers take (the Worker SDK does at start-up).
    _QUEUES + "SetJobSchema": WORK,
    **{
        _QUEUES + m: READ
        for m in (
            "ListQueues",
            "GetQueue",
            "ListWorkers",
            "WatchEvents",
            "ListSchedules",
            "GetSchedule",
            "ListJobSchemas",
        )
    },
    **{
        _QUEUES + m: ADMIN
        for m in (
            "PauseQueue",
            "ResumeQueue",
            "DrainQueue",
            "CleanQueue",
            "ObliterateQueue",
            "RetryFailedJobs",
            "PromoteDelayedJobs",
            "UpdateQueueSettings",
            "UpsertSchedule",
            "RemoveSchedule",
        )
    },
}
"""The permission each method needs; methods not listed here need none but a valid token
(server reflection), and health checks need not even that."""
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


@dataclass(frozen=True, slots=True)
class Grant:
    role: str
    pattern: str

    def allows(self, permission: str, queue: str) -> bool:
        return permission in ROLES[self.role] and fnmatch.fnmatchcase(queue, self.pattern)


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller of one call: a token's id and name, and what it was granted."""

    token_id: str
    name: str
    grants: tuple[Grant, ...]

    def may(self, permission: str, queue: str) -> bool:
        return any(g.allows(permission, queue) for g in self.grants)

    def may_any(self, permission: str) -> bool:
        """Whether some queue allows ``permission`` (calls that name no queue)."""
        return any(permission in ROLES[g.role] for g in self.grants)

    def check(self, permission: str, queue: str, field: str = "queue") -> None:
        if not self.may(permission, queue):
            raise PermissionDenied(
                f"token {self.name!r} may not {permission} on queue {queue!r} ({field})",
                queue=queue,
                permission=permission,
            )


_caller: contextvars.ContextVar[Identity | None] = contextvars.ContextVar(
    "jobbroker_caller", default=None
)


def caller() -> Identity | None:
    """The identity of the call being served; None when authentication is off."""
    return _caller.get()


def set_caller(identity: Identity | None) -> None:
    _caller.set(identity)


def visible(queue: str) -> bool:
    """Whether the caller may read ``queue`` (always, without authentication)."""
    identity = _caller.get()
    return identity is None or identity.may(READ, queue)


def lease_tag() -> str:
    """What a lease token taken by this caller carries after its fence: ``<token id>.``."""
    identity = _caller.get()
    return f"{identity.token_id}." if identity is not None else ""


def check_lease(token: str, field: str) -> None:
    """Refuse a report on a lease taken with another token."""
    identity = _caller.get()
    if identity is None:
        return
    if not token.partition("-")[2].startswith(identity.token_id + "."):
        raise PermissionDenied(
            f"{field}: the lease was taken with another token; only that token may report on it",
            field=field,
        )


def request_queues(request: Any) -> list[tuple[str, str]]:
    """The queues a request names, each with the field naming it."""
    found: list[tuple[str, str]] = []
    queue = getattr(request, "queue", None)
    if isinstance(queue, str):
        found.append((queue, "queue"))
    schedule = getattr(request, "schedule", None)
    if schedule is not None and isinstance(getattr(schedule, "queue", None), str):
        found.append((schedule.queue, "schedule.queue"))
    for i, name in enumerate(getattr(request, "queues", ())):
        found.append((name, f"queues[{i}]"))
    for i, name in enumerate(getattr(request, "more_queues", ())):
        found.append((name, f"more_queues[{i}]"))
    lease = getattr(request, "lease", None)  # a worker stream message asking for jobs
    if lease is not None:
        found.append((lease.queue, "lease.queue"))
        for i, name in enumerate(lease.more_queues):
            found.append((name, f"lease.more_queues[{i}]"))
    for i, update in enumerate(getattr(request, "updates", ())):
        found.append((update.queue, f"updates[{i}].queue"))
    for i, outcome in enumerate(getattr(request, "outcomes", ())):
        kind = outcome.WhichOneof("kind")
        if kind is not None:
            found.append((getattr(outcome, kind).queue, f"outcomes[{i}].{kind}.queue"))
    return found


def authorize(identity: Identity, permission: str, request: Any) -> None:
    """Check every queue a request names; a request naming none needs the permission on some
    queue (ListQueues then shows only the queues the caller may read)."""
    queues = request_queues(request)
    for queue, field in queues:
        if queue:  # an empty name is the servicer's INVALID_ARGUMENT to give
            identity.check(permission, queue, field)
    if not queues and not identity.may_any(permission):
        raise PermissionDenied(f"token {identity.name!r} may not {permission} on any queue")
