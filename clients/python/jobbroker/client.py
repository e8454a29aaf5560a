"""Client and AsyncClient: add jobs, read them, cancel them, follow and wait for them.

    from jobbroker import Client, AsyncClient

:class:`AsyncClient` does the work on grpc.aio. :class:`Client` is its synchronous twin: it runs
an AsyncClient on a private event-loop thread and hands every call over to it, so the two behave
the same in every detail (deadlines, retries, errors, stream resumption). See docs/client.md.
"""

from __future__ import annotations

from ._async import AsyncClient, Logs, Page
from ._calls import BulkItem, OptionFields
from ._sync import Client
from .queue_models import JobCounts, QueueInfo, QueueSettings, RateLimit, Schedule, WorkerInfo

__all__ = [
    "AsyncClient",
    "BulkItem",
    "Client",
    "JobCounts",
    "Logs",
    "OptionFields",
    "Page",
    "QueueInfo",
    "QueueSettings",
    "RateLimit",
    "Schedule",
    "WorkerInfo",
]
