"""Errors a caller can cause, each with its gRPC status code and ErrorInfo reason.

One class per reason, and every reason's name is read from the ``ErrorReason`` enum of
``error_reason.proto`` (the contract), never spelled here: the Lua scripts answer with the
same names, and tests/unit/test_error_reasons.py checks that the classes, the scripts and the
Python client cover the enum exactly.
"""

from __future__ import annotations

from typing import Any, ClassVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from jobbroker.v1 import error_reason_pb2 as er

DOMAIN = "jobbroker.v1"
_PREFIX = "ERROR_REASON_"


def reason_name(value: er.ErrorReason.ValueType) -> str:
    """The name an ``ErrorReason`` goes by on the wire (ErrorInfo.reason), without its prefix."""
    return er.ErrorReason.Name(value).removeprefix(_PREFIX)


REASONS = frozenset(
    reason_name(value) for value in er.ErrorReason.values() if value != er.ERROR_REASON_UNSPECIFIED
)
"""Every reason the broker may answer with."""


class BrokerError(Exception):
    """An error answered to the caller as a gRPC status with a ``google.rpc.ErrorInfo``.

    Abstract: raise one of the subclasses, whose ``reason`` is an ``ErrorReason``."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    reason: ClassVar[str] = ""

    def __init__(self, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.message = message
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
    reason = reason_name(er.ERROR_REASON_INVALID_FIELD)

    def __init__(self, field: str, problem: str, **metadata: str) -> None:
        super().__init__(f"{field}: {problem}", field=field, **metadata)
        self.field = field


class NotFound(BrokerError):
    code = grpc.StatusCode.NOT_FOUND
    reason = reason_name(er.ERROR_REASON_JOB_NOT_FOUND)


class ScheduleNotFound(NotFound):
    reason = reason_name(er.ERROR_REASON_SCHEDULE_NOT_FOUND)


def job_not_found(queue: str, job_id: str) -> NotFound:
    return NotFound(f"job {job_id} not found in queue {queue}", queue=queue, job_id=job_id)


def schedule_not_found(queue: str, key: str) -> ScheduleNotFound:
    return ScheduleNotFound(
        f"schedule {key!r} not found in queue {queue!r}", queue=queue, schedule_key=key
    )


class AlreadyExists(BrokerError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = reason_name(er.ERROR_REASON_JOB_ID_CONFLICT)


class FailedPrecondition(BrokerError):
    """Abstract: the job or lease is not in a state that allows the call."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    template: ClassVar[str] = ""
    """The message of a script's refusal of one item (:func:`item_error`)."""


class LeaseExpired(FailedPrecondition):
    reason = reason_name(er.ERROR_REASON_LEASE_EXPIRED)
    template = "the lease on job {job} is no longer valid (job is {state})"


class LeaseSuperseded(FailedPrecondition):
    reason = reason_name(er.ERROR_REASON_LEASE_SUPERSEDED)
    template = "job {job} was leased again since this lease was given (job is {state})"


class JobActive(FailedPrecondition):
    reason = reason_name(er.ERROR_REASON_JOB_ACTIVE)
    template = "job {job} is active; cancel it first"


class JobFinished(FailedPrecondition):
    reason = reason_name(er.ERROR_REASON_JOB_FINISHED)
    template = "job {job} already finished ({state})"


class JobNotDelayed(FailedPrecondition):
    reason = reason_name(er.ERROR_REASON_JOB_NOT_DELAYED)
    template = "job {job} is not delayed ({state})"


class JobNotRetryable(FailedPrecondition):
    reason = reason_name(er.ERROR_REASON_JOB_NOT_RETRYABLE)
    template = "job {job} is neither failed nor cancelled ({state})"


class LimitExceeded(BrokerError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = reason_name(er.ERROR_REASON_LIMIT_EXCEEDED)

    def __init__(self, limit: str, problem: str, field: str = "") -> None:
        metadata = {"limit": limit, **({"field": field} if field else {})}
        super().__init__(f"{problem} (limit {limit})", **metadata)


class Unauthenticated(BrokerError):
    """Abstract: the call carries no valid token."""

    code = grpc.StatusCode.UNAUTHENTICATED


class TokenMissing(Unauthenticated):
    reason = reason_name(er.ERROR_REASON_TOKEN_MISSING)


class TokenMalformed(Unauthenticated):
    reason = reason_name(er.ERROR_REASON_TOKEN_MALFORMED)


class TokenUnknown(Unauthenticated):
    reason = reason_name(er.ERROR_REASON_TOKEN_UNKNOWN)


class TokenRevoked(Unauthenticated):
    reason = reason_name(er.ERROR_REASON_TOKEN_REVOKED)


class PermissionDenied(BrokerError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = reason_name(er.ERROR_REASON_PERMISSION_DENIED)


class Unavailable(BrokerError):
    """Redis cannot be reached or did not answer in time."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = reason_name(er.ERROR_REASON_REDIS_UNAVAILABLE)


class ShuttingDown(Unavailable):
    reason = reason_name(er.ERROR_REASON_SHUTTING_DOWN)


class TokenChanged(Unavailable):
    reason = reason_name(er.ERROR_REASON_TOKEN_CHANGED)


class DurabilityTimeout(Unavailable):
    reason = reason_name(er.ERROR_REASON_DURABILITY_TIMEOUT)


ITEM_REASONS: dict[str, type[FailedPrecondition]] = {
    cls.reason: cls
    for cls in (
        LeaseExpired,
        LeaseSuperseded,
        JobActive,
        JobFinished,
        JobNotDelayed,
        JobNotRetryable,
    )
}
"""The reasons a script gives for refusing an item besides JOB_NOT_FOUND and INVALID_FIELD,
with their error class."""


def item_error(script_reason: str, queue: str, job_id: str, state: str) -> BrokerError:
    """The error for a script's refusal of one item (the reason is an ``ErrorReason`` name)."""
    state = state or "gone"
    if script_reason == NotFound.reason:
        return job_not_found(queue, job_id)
    if script_reason == InvalidArgument.reason:  # the only field a script judges is the token
        return InvalidArgument(
            "token",
            f"no lease on job {job_id} was given with this token (job is {state})",
            queue=queue,
            job_id=job_id,
        )
    cls = ITEM_REASONS[script_reason]
    message = cls.template.format(job=job_id, queue=queue, state=state)
    return cls(message, queue=queue, job_id=job_id)


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: BrokerError) -> None:
    """End the call with ``error``'s status (raises, as ``context.abort`` does)."""
    status = error.to_status()
    await context.abort(status.code, status.details, status.trailing_metadata)
