"""Jobs, events and queues as the HTTP API's JSON: the guide's status shape, camelCase."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from jobbroker import Event, Job, QueueInfo, Raw
from jobbroker.models import Failure


def ms(value: datetime | None) -> int | None:
    """A time as milliseconds since the Unix epoch (Bull's ``timestamp``/``processedOn``)."""
    return None if value is None else round(value.timestamp() * 1000)


def payload(value: Any) -> Any:
    """A decoded payload as JSON: JSON as it is; other content types as base64 with the type."""
    if isinstance(value, Raw):
        return {"contentType": value.content_type, "base64": base64.b64encode(value.body).decode()}
    return value


def failure(value: Failure | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {
        "reason": value.reason,
        "message": value.message,
        "errorType": value.error_type,
        "stack": value.stack,
        "attempt": value.attempt,
    }


def job(value: Job) -> dict[str, Any]:
    """``{id, state, progress, result, failedReason, attempts}`` (the guide's getJobStatus) and
    the rest of the snapshot."""
    return {
        "id": value.id,
        "queue": value.queue,
        "name": value.name,
        "state": str(value.state),
        "progress": value.progress.percent,
        "progressValue": payload(value.progress.value),
        "result": payload(value.result),
        "failedReason": value.failure.message if value.failure else None,
        "attempts": value.attempts_made,
        "attemptsMade": value.attempts_made,
        "maxAttempts": value.max_attempts,
        "data": payload(value.data),
        "failure": failure(value.failure),
        "timestamp": ms(value.created_at),
        "processedOn": ms(value.started_at),
        "finishedOn": ms(value.finished_at),
        "runAt": ms(value.run_at),
        "workerId": value.worker_id or None,
        "cancelRequested": value.cancel_requested,
        "logCount": value.log_count,
    }


def event(value: Event) -> dict[str, Any]:
    return {
        "id": value.id,
        "type": str(value.type),
        "queue": value.queue,
        "jobId": value.job_id,
        "timestamp": ms(value.timestamp),
        "state": None if value.state is None else str(value.state),
        "attempt": value.attempt,
        "progress": None if value.progress is None else value.progress.percent,
        "progressValue": None if value.progress is None else payload(value.progress.value),
        "result": payload(value.result),
        "failedReason": value.failure.message if value.failure else None,
        "failure": failure(value.failure),
        "final": value.final,
    }


def queue(value: QueueInfo, workers: int | None = None) -> dict[str, Any]:
    counts = value.counts
    settings = value.settings
    return {
        "name": value.name,
        "paused": value.paused,
        "counts": {
            "waiting": counts.waiting,
            "delayed": counts.delayed,
            "active": counts.active,
            "completed": counts.completed,
            "failed": counts.failed,
            "cancelled": counts.cancelled,
        },
        "rateLimit": None if settings.rate_limit is None else str(settings.rate_limit),
        "concurrency": settings.concurrency or None,
        **({} if workers is None else {"workers": workers}),
    }
