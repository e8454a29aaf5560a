"""Errors a caller can cause, each with its gRPC status code and ErrorInfo reason."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "jobbroker.v1"


class BrokerError(Exception):
    """An error answered to the caller as a gRPC status with a ``google.rpc.ErrorInfo``."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, reason: str | None = None, **metadata: str) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata = metadata

    def to_status(self) -> grpc.Status:
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=DOMAIN, metadata=self.metadata
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        status = status_pb2.Status(code=self.code.value[0], message=self.message, details=[detail])
        return rpc_status.to_status(status)  # type: ignore[no-any-return]


class InvalidArgument(BrokerError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_FIELD"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", field=field)
        self.field = field


class NotFound(BrokerError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "JOB_NOT_FOUND"


def job_not_found(queue: str, job_id: str) -> NotFound:
    return NotFound(f"job {job_id} not found in queue {queue}", queue=queue, job_id=job_id)


def schedule_not_found(queue: str, key: str) -> NotFound:
    return NotFound(
        f"schedule {key!r} not found in queue {queue!r}",
        "SCHEDULE_NOT_FOUND",
        queue=queue,
        schedule_key=key,
    )


class AlreadyExists(BrokerError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "JOB_ID_CONFLICT"


class FailedPrecondition(BrokerError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class LimitExceeded(BrokerError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "LIMIT_EXCEEDED"

    def __init__(self, limit: str, problem: str, field: str = "") -> None:
        metadata = {"limit": limit, **({"field": field} if field else {})}
        super().__init__(f"{problem} (limit {limit})", **metadata)


class Unauthenticated(BrokerError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(BrokerError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class Unavailable(BrokerError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "REDIS_UNAVAILABLE"


# Script reasons for an item that could not be applied -> (status code, ErrorInfo reason).
ITEM_REASONS: dict[str, tuple[grpc.StatusCode, str]] = {
    "NOT_FOUND": (grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND"),
    "NOT_ISSUED": (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"),
    "LEASE_EXPIRED": (grpc.StatusCode.FAILED_PRECONDITION, "LEASE_EXPIRED"),
    "LEASE_SUPERSEDED": (grpc.StatusCode.FAILED_PRECONDITION, "LEASE_SUPERSEDED"),
    "ACTIVE": (grpc.StatusCode.FAILED_PRECONDITION, "JOB_ACTIVE"),
    "ALREADY_FINISHED": (grpc.StatusCode.FAILED_PRECONDITION, "JOB_FINISHED"),
    "NOT_DELAYED": (grpc.StatusCode.FAILED_PRECONDITION, "JOB_NOT_DELAYED"),
    "NOT_RETRYABLE": (grpc.StatusCode.FAILED_PRECONDITION, "JOB_NOT_RETRYABLE"),
}

_ITEM_MESSAGES = {
    "NOT_FOUND": "job {job} not found in queue {queue}",
    "NOT_ISSUED": "token: no lease on job {job} was given with this token (job is {state})",
    "LEASE_EXPIRED": "the lease on job {job} is no longer valid (job is {state})",
    "LEASE_SUPERSEDED": "job {job} was leased again since this lease was given (job is {state})",
    "ACTIVE": "job {job} is active; cancel it first",
    "ALREADY_FINISHED": "job {job} already finished ({state})",
    "NOT_DELAYED": "job {job} is not delayed ({state})",
    "NOT_RETRYABLE": "job {job} is neither failed nor cancelled ({state})",
}


def item_error(script_reason: str, queue: str, job_id: str, state: str) -> BrokerError:
    """The error for a script's refusal of one item."""
    code, reason = ITEM_REASONS[script_reason]
    message = _ITEM_MESSAGES[script_reason].format(job=job_id, queue=queue, state=state or "gone")
    error = FailedPrecondition(message, reason, queue=queue, job_id=job_id)
    error.code = code
    if reason == InvalidArgument.reason:
        error.metadata["field"] = "token"  # the only field a script judges
    return error


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: BrokerError) -> None:
    """End the call with ``error``'s status (raises, as ``context.abort`` does)."""
    status = error.to_status()
    await context.abort(status.code, status.details, status.trailing_metadata)
