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
from .. import access, validation
from . import lease_request, long_poll, outcomes
from .common import Parts, server_stream, unary
from .worker_stream import WorkerSession

Context = grpc.aio.ServicerContext[Any, Any]


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
        jobs, held = await lease_request.given_back_if_cancelled(
            self.store,
            queue,
            self.store.lease(queue, worker_id, max_jobs, lease_ms, access.lease_tag()),
            lambda reply: reply[0],
        )
        if jobs:
            # Wake maintenance when the earliest lease or attempt timeout falls due.
            self.parts.maintenance.hint_at(queue, min(j.lease_expires_at_ms for j in jobs))
        return jobs, held

    async def _lease_from(
        self, queues: list[str], worker_id: str, max_jobs: int, lease_ms: int
    ) -> tuple[list[worker_service_pb2.LeasedJob], dict[str, int]]:
        """Lease from the queues in order until ``max_jobs`` are leased (one script call per
        queue); returns the jobs and, per queue asked, what held its leasing back."""
        jobs: list[worker_service_pb2.LeasedJob] = []
        held: dict[str, int] = {}
        try:
            for queue in queues:
                want = max_jobs - len(jobs)
                got, held[queue] = await self._lease_once(queue, worker_id, want, lease_ms)
                jobs.extend(got)
                if len(jobs) >= max_jobs:
                    break
        except asyncio.CancelledError:
            # The caller went away: give back what the earlier queues leased (the queue being
            # leased from gives its own back, in _lease_once).
            with contextlib.suppress(Exception):
                for queue in dict.fromkeys(job.queue for job in jobs):
                    items = [
                        ReleaseItem(j.job_id, j.token, delay_ms=0) for j in jobs if j.queue == queue
                    ]
                    await self.store.release(queue, items)
            raise
        return jobs, held

    @unary
    async def Lease(
        self, request: worker_service_pb2.LeaseRequest, context: Context
    ) -> worker_service_pb2.LeaseResponse:
        queues = lease_request.queues(request.queue, request.more_queues)
        if not request.worker_id:
            raise InvalidArgument("worker_id", "is required")
        worker_id = validation.job_id(request.worker_id, "worker_id")
        max_jobs, lease_ms = lease_request.amounts(
            request.max_jobs, request.lease_ms, self.settings
        )
        wait_ms = validation.bounded(request.wait_ms, "wait_ms", 0, 0, limits.MAX_WAIT_MS)
        jobs, held = await self._lease_from(queues, worker_id, max_jobs, lease_ms)
        if jobs or not wait_ms:
            return worker_service_pb2.LeaseResponse(jobs=jobs)
        waited = await long_poll.long_poll(
            self.parts,
            queues,
            wait_ms / 1000,
            held,
            lambda: self._lease_from(queues, worker_id, max_jobs, lease_ms),
            bool,
        )
        return worker_service_pb2.LeaseResponse(jobs=waited or [])

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
