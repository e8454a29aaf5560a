"""What a request for jobs asks, checked: Lease calls and the worker stream's `lease`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from jobbroker import limits
from jobbroker.v1 import worker_service_pb2

from ...errors import InvalidArgument
from ...settings import Settings
from ...storage.contracts.leases import ReleaseItem
from ...storage.store import Store
from .. import validation

T = TypeVar("T")


def queues(queue: str, more_queues: Sequence[str], prefix: str = "") -> list[str]:
    """``queue`` then ``more_queues``, checked, each once; a bad one is INVALID_ARGUMENT naming
    the field (after ``prefix``)."""
    names = [validation.queue_name(queue, f"{prefix}queue")]
    if len(more_queues) > limits.MAX_LEASE_QUEUES - 1:
        raise InvalidArgument(
            f"{prefix}more_queues", f"at most {limits.MAX_LEASE_QUEUES - 1} queues besides `queue`"
        )
    for name in more_queues:
        names.append(validation.queue_name(name, f"{prefix}more_queues"))
    return list(dict.fromkeys(names))


def amounts(max_jobs: int, lease_ms: int, settings: Settings, prefix: str = "") -> tuple[int, int]:
    """The job count and lease duration asked for, checked (0: the defaults)."""
    return (
        validation.bounded(max_jobs, f"{prefix}max_jobs", 1, 1, limits.MAX_LEASE_JOBS),
        validation.bounded(
            lease_ms,
            f"{prefix}lease_ms",
            settings.default_lease_ms,
            limits.MIN_LEASE_MS,
            limits.MAX_LEASE_MS,
        ),
    )


async def given_back_if_cancelled(
    store: Store,
    queue: str,
    call: Awaitable[T],
    jobs_of: Callable[[T], Sequence[worker_service_pb2.LeasedJob]],
) -> T:
    """Await a store call that leases from ``queue``; if the caller goes away meanwhile, give
    the jobs it leased (``jobs_of`` its result) straight back, so none waits for its lease to
    expire."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            items = [ReleaseItem(j.job_id, j.token, delay_ms=0) for j in jobs_of(await task)]
            if items:
                await store.release(queue, items)
        raise
