"""One exception per broker error reason, mapped 1:1 from the gRPC status and ErrorInfo."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from .v1 import error_reason_pb2 as er

DOMAIN = "jobbroker.v1"
_DETAILS_KEY = "grpc-status-details-bin"


class JobBrokerError(Exception):
    """Base of every error the broker answers with."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    reason: str = ""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(JobBrokerError):
    """A request field is missing or wrong; :attr:`field` names it."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_FIELD"

    @property
    def field(self) -> str:
        return self.metadata.get("field", "")


class JobNotFound(JobBrokerError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "JOB_NOT_FOUND"


class ScheduleNotFound(JobBrokerError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "SCHEDULE_NOT_FOUND"


class JobIdConflict(JobBrokerError):
    """A custom job id names an existing job with another name or data."""

    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "JOB_ID_CONFLICT"


class LeaseError(JobBrokerError):
    """The lease a worker call named is no longer valid; the call changed nothing."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class LeaseExpired(LeaseError):
    reason = "LEASE_EXPIRED"


class LeaseSuperseded(LeaseError):
    reason = "LEASE_SUPERSEDED"


class JobStateError(JobBrokerError):
    """The job is not in a state that allows the call."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class JobActive(JobStateError):
    reason = "JOB_ACTIVE"


class JobFinished(JobStateError):
    reason = "JOB_FINISHED"


class JobNotDelayed(JobStateError):
    reason = "JOB_NOT_DELAYED"


class JobNotRetryable(JobStateError):
    reason = "JOB_NOT_RETRYABLE"


class LimitExceeded(JobBrokerError):
    """A size or count limit was exceeded; :attr:`limit` names it."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "LIMIT_EXCEEDED"

    @property
    def limit(self) -> str:
        return self.metadata.get("limit", "")


class Unavailable(JobBrokerError):
    """The broker or its Redis cannot be reached right now; retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class RedisUnavailable(Unavailable):
    reason = "REDIS_UNAVAILABLE"


class ShuttingDown(Unavailable):
    reason = "SHUTTING_DOWN"


class Unauthenticated(JobBrokerError):
    """The call carries no valid API token (missing, malformed, unknown or revoked);
    :attr:`reason` says which."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "TOKEN_UNKNOWN"


class PermissionDenied(JobBrokerError):
    """The token's grants do not allow this method on this queue, or the lease belongs to
    another token."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class DeadlineExceeded(JobBrokerError):
    """The call's deadline passed before the broker answered."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class JobFailed(Exception):
    """Raised by ``wait()`` for a job that failed; carries the job's failure."""

    def __init__(self, job: Any) -> None:
        failure = job.failure
        detail = f"{failure.reason}: {failure.message}" if failure else "failed"
        super().__init__(f"job {job.id} of queue {job.queue} failed ({detail})")
        self.job = job


class JobCancelled(Exception):
    """Raised by ``wait()`` for a job that was cancelled."""

    def __init__(self, job: Any) -> None:
        super().__init__(f"job {job.id} of queue {job.queue} was cancelled")
        self.job = job


def _reason(value: er.ErrorReason.ValueType) -> str:
    return er.ErrorReason.Name(value).removeprefix("ERROR_REASON_")


# Keyed by the ErrorReason enum itself, so no reason's name is spelled here;
# tests/unit/test_error_reasons.py checks that every reason of the enum has its entry.
_BY_REASON: dict[str, type[JobBrokerError]] = {
    _reason(value): cls
    for value, cls in (
        (er.ERROR_REASON_INVALID_FIELD, InvalidArgument),
        (er.ERROR_REASON_JOB_NOT_FOUND, JobNotFound),
        (er.ERROR_REASON_SCHEDULE_NOT_FOUND, ScheduleNotFound),
        (er.ERROR_REASON_JOB_ID_CONFLICT, JobIdConflict),
        (er.ERROR_REASON_LEASE_EXPIRED, LeaseExpired),
        (er.ERROR_REASON_LEASE_SUPERSEDED, LeaseSuperseded),
        (er.ERROR_REASON_JOB_ACTIVE, JobActive),
        (er.ERROR_REASON_JOB_FINISHED, JobFinished),
        (er.ERROR_REASON_JOB_NOT_DELAYED, JobNotDelayed),
        (er.ERROR_REASON_JOB_NOT_RETRYABLE, JobNotRetryable),
        (er.ERROR_REASON_LIMIT_EXCEEDED, LimitExceeded),
        (er.ERROR_REASON_REDIS_UNAVAILABLE, RedisUnavailable),
        (er.ERROR_REASON_SHUTTING_DOWN, ShuttingDown),
        (er.ERROR_REASON_DURABILITY_TIMEOUT, Unavailable),
        (er.ERROR_REASON_TOKEN_MISSING, Unauthenticated),
        (er.ERROR_REASON_TOKEN_MALFORMED, Unauthenticated),
        (er.ERROR_REASON_TOKEN_UNKNOWN, Unauthenticated),
        (er.ERROR_REASON_TOKEN_REVOKED, Unauthenticated),
        (er.ERROR_REASON_TOKEN_CHANGED, Unavailable),
        (er.ERROR_REASON_PERMISSION_DENIED, PermissionDenied),
    )
}
_BY_CODE: dict[grpc.StatusCode, type[JobBrokerError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: JobNotFound,
    grpc.StatusCode.ALREADY_EXISTS: JobIdConflict,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}


def _error_info(trailing: Any) -> error_details_pb2.ErrorInfo | None:
    for key, value in trailing or ():
        if key == _DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    return None


def error_from_reason(
    code: grpc.StatusCode, reason: str, message: str, metadata: Mapping[str, str] | None = None
) -> JobBrokerError:
    """The exception for a status code and reason (also used for stream items' errors)."""
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code, JobBrokerError)
    return cls(message, code=code, reason=reason or cls.reason, metadata=metadata)


def from_rpc_error(error: grpc.RpcError) -> JobBrokerError:
    """The exception for a failed call (sync or asyncio)."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or code.name
    info = _error_info(error.trailing_metadata())
    if info is None:
        return error_from_reason(code, "", message)
    return error_from_reason(code, info.reason, message, dict(info.metadata))
