"""jobbroker: a gRPC job broker on Redis.

    from jobbroker import Client, AsyncClient, Worker

The generated stubs live in ``jobbroker.v1``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .connection import ConnectionSettings, tls_credentials
from .errors import (
    InvalidArgument,
    JobBrokerError,
    JobCancelled,
    JobFailed,
    JobIdConflict,
    JobNotFound,
    LeaseError,
    LeaseExpired,
    LeaseSuperseded,
    LimitExceeded,
    PermissionDenied,
    ScheduleNotFound,
    Unauthenticated,
    Unavailable,
)
from .models import Added, Backoff, Event, EventType, Job, JobOptions, JobState, Keep, Raw
from .queue_models import JobCounts, QueueInfo, QueueSettings, RateLimit, Schedule, WorkerInfo

if TYPE_CHECKING:
    from .client import AsyncClient, Client
    from .worker import DoNotRetry, JobContext, Worker, WorkerStats

__version__ = "0.1.0"

_LAZY = {
    "AsyncClient": "client",
    "Client": "client",
    "Worker": "worker",
    "JobContext": "worker",
    "DoNotRetry": "worker",
    "WorkerStats": "worker",
}


def __getattr__(name: str) -> Any:
    # Client and Worker load on first use, so `import jobbroker` stays cheap for the CLI.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jobbroker' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "Added",
    "AsyncClient",
    "Backoff",
    "Client",
    "ConnectionSettings",
    "DoNotRetry",
    "Event",
    "EventType",
    "InvalidArgument",
    "Job",
    "JobBrokerError",
    "JobCancelled",
    "JobContext",
    "JobCounts",
    "JobFailed",
    "JobIdConflict",
    "JobNotFound",
    "JobOptions",
    "JobState",
    "Keep",
    "LeaseError",
    "LeaseExpired",
    "LeaseSuperseded",
    "LimitExceeded",
    "PermissionDenied",
    "QueueInfo",
    "QueueSettings",
    "RateLimit",
    "Raw",
    "Schedule",
    "ScheduleNotFound",
    "Unauthenticated",
    "Unavailable",
    "Worker",
    "WorkerInfo",
    "WorkerStats",
    "__version__",
    "tls_credentials",
]
