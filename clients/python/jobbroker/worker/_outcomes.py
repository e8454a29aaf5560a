"""The outcome of a lease, as the worker reports it to the broker: complete, fail or release."""

from __future__ import annotations

from typing import Any

import orjson

from ..models import Raw
from ..v1 import worker_service_pb2 as ws
from ._lease import Lease

# The broker's limits on a failure (worker_service.proto, FailRequest).
MAX_MESSAGE = 65_536
MAX_ERROR_TYPE = 256
MAX_STACK = 262_144
"""Longest stack; a longer one keeps its end."""


class Report:
    """An outcome waiting to be sent: written straight into the stream's message (building a
    protobuf message per job and copying it into the request would cost twice as much)."""

    __slots__ = (
        "body",
        "content_type",
        "error_type",
        "job_id",
        "kind",
        "message",
        "no_retry",
        "queue",
        "stack",
        "token",
    )

    def __init__(self, kind: str, queue: str, job_id: str, token: str) -> None:
        self.kind = kind
        """``complete``, ``fail`` or ``release``."""
        self.queue = queue
        self.job_id = job_id
        self.token = token
        self.body: bytes | None = None
        self.content_type = ""
        self.message = self.error_type = self.stack = ""
        self.no_retry = False

    def __repr__(self) -> str:
        return f"<Report {self.kind} {self.queue}/{self.job_id}>"

    def write(self, outcome: ws.Outcome) -> None:
        """Fill an (empty) ``Outcome`` of a request."""
        if self.kind == "complete":
            complete = outcome.complete
            complete.queue, complete.job_id, complete.token = self.queue, self.job_id, self.token
            if self.body is not None:
                complete.result.body = self.body
                if self.content_type:
                    complete.result.content_type = self.content_type
        elif self.kind == "fail":
            fail = outcome.fail
            fail.queue, fail.job_id, fail.token = self.queue, self.job_id, self.token
            fail.message, fail.error_type, fail.stack = self.message, self.error_type, self.stack
            fail.no_retry = self.no_retry
        else:
            release = outcome.release
            release.queue, release.job_id, release.token = self.queue, self.job_id, self.token


def fail(
    lease: Lease, error_type: str, message: str, stack: str = "", *, no_retry: bool = False
) -> Report:
    """A failure of the current attempt."""
    report = Report("fail", lease.queue, lease.job_id, lease.token)
    report.message = message[:MAX_MESSAGE]
    report.error_type = error_type[:MAX_ERROR_TYPE]
    report.stack = stack
    report.no_retry = no_retry
    return report


def release(queue: str, job_id: str, token: str) -> Report:
    """Give a lease back without spending an attempt."""
    return Report("release", queue, job_id, token)


def complete(lease: Lease, result: Any) -> Report:
    """A completion with the handler's result (JSON, or :class:`Raw` as is)."""
    report = Report("complete", lease.queue, lease.job_id, lease.token)
    if isinstance(result, Raw):
        report.body, report.content_type = result.body, result.content_type
    elif result is not None:
        try:
            report.body = orjson.dumps(result)
        except TypeError as exc:
            return fail(
                lease,
                type(exc).__name__,
                f"the handler's result cannot be encoded as JSON ({exc}); return "
                "JSON-compatible values or jobbroker.Raw",
            )
    return report


def unknown_name(lease: Lease, worker_id: str, known: list[str]) -> Report:
    """The failure of a job nobody registered a handler for: final, retrying cannot help."""
    names = ", ".join(repr(name) for name in sorted(known)) or "none"
    return fail(
        lease,
        "UnknownJobName",
        f"worker {worker_id} has no handler for job name {lease.job.name!r} (handlers: {names}; "
        "register one with @worker.handler(name) or a default with @worker.handler())",
        no_retry=True,
    )


def stopped(lease: Lease) -> Report | None:
    """The outcome of a handler that stopped because it was asked to: cancelled jobs fail
    (the broker ends them CANCELLED), shut-down ones go back, lost leases report nothing."""
    reason = lease.stop_reason
    if reason == "lost":
        return None
    if reason == "cancel":
        detail = f" ({lease.stop_detail})" if lease.stop_detail else ""
        return fail(lease, "CancelledError", f"cancelled{detail}", no_retry=True)
    return release(lease.queue, lease.job_id, lease.token)
