"""WorkerService: workers lease jobs, report progress and finish them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from jobbroker import limits
from jobbroker.v1 import worker_service_pb2, worker_service_pb2_grpc

from ...errors import InvalidArgument
from ...storage.contracts.leases import ReleaseItem
from ...storage.store import CONCURRENCY_FULL, PAUSED
from .. import access, validation
from . import outcomes
from .common import Parts, server_stream, unary
from .worker_stream import WorkerSession

Context = grpc.aio.ServicerContext[Any, Any]

# Events after which a job may be waiting, so a long-polling Lease tries again.
_READY_EVENTS = frozenset({b"added", b"waiting", b"released", b"stalled"})
# While the queue is paused only a resume helps; while it is full only a finished job.
_WAKERS = {
    PAUSED: frozenset({b"resumed"}),
    CONCURRENCY_FULL: frozenset(
        {b"completed", b"failed", b"cancelled", b"released", b"stalled", b"resumed"}
    ),
}
# What an add on this replica looks like to a long poll (EventHub.added).
_ADDED = {b"e": b"added"}
# A long poll re-tries at least this often, in case an event was missed (reader reconnecting).
_POLL_FALLBACK_S = 1.0


class WorkerService(worker_service_pb2_grpc.WorkerServiceServicer):
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.settings = parts.settings
        self.store = parts.store

    async def _lease_once(
        self, queue: str, worker_id: str, max_jobs: int, lease_ms: int
    ) -> tuple[list[worker_service_pb2.LeasedJob], int]:
        """Lease; if the caller goes away meanwhile, give the jobs straight back."""
        await self.parts.registry.leased(queue, worker_id)
        task = asyncio.ensure_future(
            self.store.lease(queue, worker_id, max_jobs, lease_ms, access.lease_tag())
        )
        try:
            jobs, held = await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                jobs, _ = await task
                items = [ReleaseItem(j.job_id, j.token, delay_ms=0) for j in jobs]
                if items:
                    await self.store.release(queue, items)
            raise
        if jobs:
            # Wake maintenance when the earliest lease or attempt timeout falls due.
            self.parts.maintenance.hint_at(queue, min(j.lease_expires_at_ms for j in jobs))
        return jobs, held

    @unary
    async def Lease(
        self, request: worker_service_pb2.LeaseRequest, context: Context
    ) -> worker_service_pb2.LeaseResponse:
        queue = validation.queue_name(request.queue)
        if not request.worker_id:
            raise InvalidArgument("worker_id", "is required")
        worker_id = validation.job_id(request.worker_id, "worker_id")
        max_jobs = validation.bounded(request.max_jobs, "max_jobs", 1, 1, limits.MAX_LEASE_JOBS)
        lease_ms = validation.bounded(
            request.lease_ms,
            "lease_ms",
            self.settings.default_lease_ms,
            limits.MIN_LEASE_MS,
            limits.MAX_LEASE_MS,
        )
        wait_ms = validation.bounded(request.wait_ms, "wait_ms", 0, 0, limits.MAX_WAIT_MS)
        jobs, held = await self._lease_once(queue, worker_id, max_jobs, lease_ms)
        if jobs or not wait_ms:
            return worker_service_pb2.LeaseResponse(jobs=jobs)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000
        ready = asyncio.Event()

        def on_event(_: bytes, fields: dict[bytes, bytes]) -> None:
            # What can end the wait depends on what held leasing back.
            wakers = _WAKERS.get(held, _READY_EVENTS) if held <= 0 else ()
            if fields.get(b"e") in wakers:
                ready.set()

        unsubscribe = await self.parts.hub.subscribe(queue, on_event)
        stop_waiting = self.parts.streams.on_closing(ready.set)
        unwatch = self.parts.hub.on_added(queue, lambda: on_event(b"", _ADDED))
        try:
            while True:
                ready.clear()
                if self.parts.streams.closing:  # shutting down: a long poll ends empty
                    return worker_service_pb2.LeaseResponse()
                jobs, held = await self._lease_once(queue, worker_id, max_jobs, lease_ms)
                remaining = deadline - loop.time()
                if jobs or remaining <= 0:
                    return worker_service_pb2.LeaseResponse(jobs=jobs)
                # Rate-limited: sleep until the window ends (the fallback bounds it).
                pause = min(remaining, _POLL_FALLBACK_S, held / 1000 if held > 0 else 1e9)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await ready.wait()
        finally:
            stop_waiting()
            unsubscribe()
            unwatch()

    @server_stream
    async def ReportProgress(
        self,
        request_iterator: AsyncIterator[worker_service_pb2.ReportProgressRequest],
        context: Context,
    ) -> AsyncIterator[worker_service_pb2.ReportProgressResponse]:
        async for response in WorkerSession(self.parts).run(request_iterator):
            yield response

    async def _apply_one(self, report: outcomes.Report) -> Any:
        queue, item = outcomes.check(report, "", self.settings)
        [result] = await outcomes.apply(
            self.store, self.parts.maintenance, type(report), queue, [item]
        )
        if result.error is not None:
            raise result.error
        return result

    @unary
    async def Complete(
        self, request: worker_service_pb2.CompleteRequest, context: Context
    ) -> worker_service_pb2.CompleteResponse:
        result = await self._apply_one(request)
        return worker_service_pb2.CompleteResponse(state=result.state)

    @unary
    async def Fail(
        self, request: worker_service_pb2.FailRequest, context: Context
    ) -> worker_service_pb2.FailResponse:
        result = await self._apply_one(request)
        return worker_service_pb2.FailResponse(state=result.state, run_at_ms=result.value)

    @unary
    async def Release(
        self, request: worker_service_pb2.ReleaseRequest, context: Context
    ) -> worker_service_pb2.ReleaseResponse:
        result = await self._apply_one(request)
        return worker_service_pb2.ReleaseResponse(state=result.state)
