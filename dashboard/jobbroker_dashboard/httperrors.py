"""The broker's errors as HTTP answers: one table from gRPC status code to HTTP status.

The vocabulary is the broker's own (``jobbroker.errors``: one exception per ErrorInfo reason);
the HTTP API adds none. Its error body is ``{code, reason, message, metadata}``: the gRPC code's
name, the ErrorInfo reason, the message and the ErrorInfo metadata (``field``, ``limit``...).
"""

from __future__ import annotations

from typing import Any

import grpc
from jobbroker import InvalidArgument, JobBrokerError, LimitExceeded

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    # The job's state does not allow the call (JOB_ACTIVE, JOB_FINISHED, ...): a conflict with
    # the resource's current state, as HTTP means 409.
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
    grpc.StatusCode.CANCELLED: 503,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}
"""HTTP status per gRPC code; any other code is 500."""

SIZE_LIMITS = frozenset(
    {
        "max_payload_bytes",
        "max_message_bytes",
        "max_json_depth",
        "max_bulk_jobs",
        "max_log_line_bytes",
        "max_body_bytes",
    }
)
"""RESOURCE_EXHAUSTED limits that a smaller request would meet: 413, not 429 (rate limits and
stream counts, which waiting would meet)."""


def http_status(error: JobBrokerError) -> int:
    if (
        error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        and error.metadata.get("limit") in SIZE_LIMITS
    ):
        return 413
    return HTTP_STATUS.get(error.code, 500)


def error_body(error: JobBrokerError) -> dict[str, Any]:
    return {
        "code": error.code.name,
        "reason": error.reason,
        "message": error.message,
        "metadata": dict(error.metadata),
    }


def invalid(field: str, problem: str) -> InvalidArgument:
    """An HTTP request field the broker would refuse, or that cannot reach it: the broker's
    own INVALID_ARGUMENT (reason INVALID_FIELD), naming the field."""
    return InvalidArgument(f"{field}: {problem}", metadata={"field": field})


def too_large(limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"the request body is over {limit} bytes (limit max_body_bytes)",
        metadata={"limit": "max_body_bytes"},
    )
