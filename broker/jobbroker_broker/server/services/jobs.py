"""JobService: producers add, read, cancel and follow jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from jobbroker.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

from ...errors import BrokerError, InvalidArgument, LimitExceeded
from ...storage.add_batcher import AddBatcher
from .. import validation
from .common import Parts, server_stream, unary
from .progress import ProgressFeed

Context = grpc.aio.ServicerContext[Any, Any]

MAX_REASON = 1024


def _trace_from_metadata(options: job_pb2.JobOptions, context: Context) -> None:
    """An Add whose job carries no trace context takes the call's ``traceparent`` (and
    ``tracestate``) metadata, which other languages' gRPC instrumentation sends
    (docs/tracing.md). An invalid one is ignored, as W3C asks of a traceparent header."""
    traceparent, tracestate = validation.traceparent_metadata(context.invocation_metadata())
    if not traceparent:
        return
    carried = job_pb2.TraceContext(traceparent=traceparent, tracestate=tracestate)
    try:
        validation.trace_context(carried, "metadata")
    except InvalidArgument:
        return
    options.trace_context.CopyFrom(carried)


class JobService(job_service_pb2_grpc.JobServiceServicer):
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.settings = parts.settings
        self.store = parts.store
        self.adds = AddBatcher(parts.store, parts.settings.max_bulk_jobs)

    def _hint(self, queue: str, options: list[job_pb2.JobOptions]) -> None:
        """Wake maintenance in time for the earliest delay or lifespan of the added jobs."""
        due = [ms for o in options for ms in (o.delay_ms, o.lifespan_ms) if ms > 0]
        if due:
            self.parts.maintenance.hint(queue, min(due))

    @unary
    async def Add(
        self, request: job_service_pb2.AddRequest, context: Context
    ) -> job_service_pb2.AddResponse:
        queue = validation.queue_name(request.queue)
        if not request.options.HasField("trace_context"):
            _trace_from_metadata(request.options, context)
        job = validation.new_job(request.name, request.data, request.options, "", self.settings)
        if schemas := await self.parts.schemas.of(queue):  # job data schemas (job_schemas.py)
            schemas.check(job)
        job_id, state, duplicate = await self.adds.add(queue, job)
        if state == job_pb2.JOB_STATE_WAITING and not duplicate:
            self.parts.hub.added(queue)
        self._hint(queue, [request.options])
        return job_service_pb2.AddResponse(job_id=job_id, state=state, duplicate=duplicate)  # type: ignore[arg-type]

    @unary
    async def AddBulk(
        self, request: job_service_pb2.AddBulkRequest, context: Context
    ) -> job_service_pb2.AddBulkResponse:
        queue = validation.queue_name(request.queue)
        if len(request.jobs) > self.settings.max_bulk_jobs:
            raise LimitExceeded(
                "max_bulk_jobs",
                f"jobs has {len(request.jobs)} entries, over {self.settings.max_bulk_jobs}",
                field="jobs",
            )
        if request.each:
            return await self._add_each(queue, request)
        jobs = [
            validation.new_job(j.name, j.data, j.options, f"jobs[{i}]", self.settings)
            for i, j in enumerate(request.jobs)
        ]
        if not jobs:
            return job_service_pb2.AddBulkResponse()
        if schemas := await self.parts.schemas.of(queue):  # job data schemas (job_schemas.py)
            for i, job in enumerate(jobs):
                schemas.check(job, f"jobs[{i}].")
        added = await self.store.add(queue, jobs)
        if any(s == job_pb2.JOB_STATE_WAITING and not d for _, s, d in added):
            self.parts.hub.added(queue)
        self._hint(queue, [j.options for j in request.jobs])
        reply = job_service_pb2.AddBulkResponse()
        add = reply.results.add  # built in place: half the time of building, then copying
        for job_id, state, duplicate in added:
            add(job_id=job_id, state=state, duplicate=duplicate)
        return reply

    async def _add_each(
        self, queue: str, request: job_service_pb2.AddBulkRequest
    ) -> job_service_pb2.AddBulkResponse:
        """AddBulk with `each`: every job as if it were its own Add (same checks, same field
        names in errors), added in one script call."""
        reply = job_service_pb2.AddBulkResponse()
        results = [reply.results.add() for _ in request.jobs]
        valid: list[int] = []
        jobs = []
        schemas = await self.parts.schemas.of(queue)  # job data schemas (job_schemas.py)
        for i, j in enumerate(request.jobs):
            try:
                job = validation.new_job(j.name, j.data, j.options, "", self.settings)
                if schemas:
                    schemas.check(job)
                jobs.append(job)
                valid.append(i)
            except BrokerError as error:
                _add_error(reply, i, error)
        added = await self.store.add_each(queue, jobs) if jobs else []
        waiting = False
        for i, outcome in zip(valid, added, strict=True):
            if isinstance(outcome, BrokerError):
                _add_error(reply, i, outcome)
                continue
            job_id, state, duplicate = outcome
            result = results[i]
            result.job_id, result.state, result.duplicate = job_id, state, duplicate  # type: ignore[assignment]
            waiting = waiting or (state == job_pb2.JOB_STATE_WAITING and not duplicate)
        if waiting:
            self.parts.hub.added(queue)
        self._hint(queue, [request.jobs[i].options for i in valid])
        return reply

    @unary
    async def GetStatus(
        self, request: job_service_pb2.GetStatusRequest, context: Context
    ) -> job_service_pb2.GetStatusResponse:
        queue = validation.queue_name(request.queue)
        job, _ = await self.store.snapshot(queue, validation.job_id(request.job_id))
        return job_service_pb2.GetStatusResponse(job=job)

    @unary
    async def Cancel(
        self, request: job_service_pb2.CancelRequest, context: Context
    ) -> job_service_pb2.CancelResponse:
        queue = validation.queue_name(request.queue)
        if len(request.reason) > MAX_REASON:
            raise InvalidArgument("reason", f"must be at most {MAX_REASON} characters")
        state = await self.store.cancel(queue, validation.job_id(request.job_id), request.reason)
        return job_service_pb2.CancelResponse(state=state)  # type: ignore[arg-type]

    @server_stream
    async def StreamProgress(
        self, request: job_service_pb2.StreamProgressRequest, context: Context
    ) -> AsyncIterator[job_service_pb2.StreamProgressResponse]:
        queue = validation.queue_name(request.queue)
        job_id = validation.job_id(request.job_id)
        after = validation.event_id(request.after_event_id) if request.after_event_id else ""
        feed = ProgressFeed(self.store, queue, job_id, after)
        unsubscribe = await self.parts.hub.subscribe(queue, feed.push, job_id=job_id)
        try:
            async for response in feed.catch_up():
                yield response
            if not feed.ended:
                async for response in feed.live():
                    yield response
        finally:
            unsubscribe()

    @unary
    async def ListJobs(
        self, request: job_service_pb2.ListJobsRequest, context: Context
    ) -> job_service_pb2.ListJobsResponse:
        queue = validation.queue_name(request.queue)
        if request.state == job_pb2.JOB_STATE_UNSPECIFIED:
            raise InvalidArgument("state", "is required")
        size = validation.bounded(request.page_size, "page_size", 50, 1, 1_000)
        jobs, token, total = await self.store.list_jobs(
            queue, request.state, size, request.page_token, request.descending
        )
        return job_service_pb2.ListJobsResponse(jobs=jobs, next_page_token=token, total=total)

    @unary
    async def Retry(
        self, request: job_service_pb2.RetryRequest, context: Context
    ) -> job_service_pb2.RetryResponse:
        queue = validation.queue_name(request.queue)
        state = await self.store.retry(queue, validation.job_id(request.job_id))
        return job_service_pb2.RetryResponse(state=state)  # type: ignore[arg-type]

    @unary
    async def Promote(
        self, request: job_service_pb2.PromoteRequest, context: Context
    ) -> job_service_pb2.PromoteResponse:
        queue = validation.queue_name(request.queue)
        state = await self.store.promote(queue, validation.job_id(request.job_id))
        return job_service_pb2.PromoteResponse(state=state)  # type: ignore[arg-type]

    @unary
    async def Remove(
        self, request: job_service_pb2.RemoveRequest, context: Context
    ) -> job_service_pb2.RemoveResponse:
        queue = validation.queue_name(request.queue)
        state = await self.store.remove(queue, validation.job_id(request.job_id))
        return job_service_pb2.RemoveResponse(state=state)  # type: ignore[arg-type]

    @unary
    async def GetLogs(
        self, request: job_service_pb2.GetLogsRequest, context: Context
    ) -> job_service_pb2.GetLogsResponse:
        queue = validation.queue_name(request.queue)
        limit = validation.bounded(request.limit, "limit", 100, 1, 1_000)
        lines, total = await self.store.logs(
            queue, validation.job_id(request.job_id), request.offset, limit
        )
        return job_service_pb2.GetLogsResponse(lines=lines, total=total)


def _add_error(reply: job_service_pb2.AddBulkResponse, index: int, error: BrokerError) -> None:
    reply.errors.add(
        index=index,
        code=error.code.value[0],
        reason=error.reason,
        message=error.message,
        metadata=error.metadata,
    )
