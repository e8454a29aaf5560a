"""QueueService: what operators do with a queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from jobbroker import limits
from jobbroker.v1 import job_pb2, queue_service_pb2, queue_service_pb2_grpc

from ...errors import InvalidArgument
from ...storage.queue_store import QueueStore
from .. import access, validation
from .common import Parts, server_stream, unary
from .queue_feed import QueueFeed
from .schedules import Schedules

Context = grpc.aio.ServicerContext[Any, Any]
pb = queue_service_pb2

MAX_CLEAN = 100_000
MAX_WINDOW_MS = 86_400_000
_CLEANABLE = frozenset(
    {
        job_pb2.JOB_STATE_WAITING,
        job_pb2.JOB_STATE_DELAYED,
        job_pb2.JOB_STATE_COMPLETED,
        job_pb2.JOB_STATE_FAILED,
        job_pb2.JOB_STATE_CANCELLED,
    }
)


def _rate_limit(limit: pb.RateLimit, field: str) -> None:
    if limit.max and not 1 <= limit.duration_ms <= MAX_WINDOW_MS:
        raise InvalidArgument(f"{field}.duration_ms", f"must be between 1 and {MAX_WINDOW_MS}")
    if not limit.max and limit.duration_ms:
        raise InvalidArgument(f"{field}.max", "is required when duration_ms is set")


class QueueService(queue_service_pb2_grpc.QueueServiceServicer):
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.queues = QueueStore(parts.store)
        self.feed = QueueFeed(parts)
        self.schedules = Schedules(parts)

    @unary
    async def ListQueues(
        self, request: pb.ListQueuesRequest, context: Context
    ) -> pb.ListQueuesResponse:
        return pb.ListQueuesResponse(queues=await self.queues.all(access.visible))

    @unary
    async def GetQueue(self, request: pb.GetQueueRequest, context: Context) -> pb.GetQueueResponse:
        queue = validation.queue_name(request.queue)
        return pb.GetQueueResponse(queue=await self.queues.info(queue))

    @unary
    async def PauseQueue(
        self, request: pb.PauseQueueRequest, context: Context
    ) -> pb.PauseQueueResponse:
        await self.queues.pause(validation.queue_name(request.queue), True)
        return pb.PauseQueueResponse()

    @unary
    async def ResumeQueue(
        self, request: pb.ResumeQueueRequest, context: Context
    ) -> pb.ResumeQueueResponse:
        await self.queues.pause(validation.queue_name(request.queue), False)
        return pb.ResumeQueueResponse()

    @unary
    async def DrainQueue(
        self, request: pb.DrainQueueRequest, context: Context
    ) -> pb.DrainQueueResponse:
        queue = validation.queue_name(request.queue)
        removed = await self.queues.drain(queue, request.include_delayed)
        return pb.DrainQueueResponse(removed=removed)

    @unary
    async def CleanQueue(
        self, request: pb.CleanQueueRequest, context: Context
    ) -> pb.CleanQueueResponse:
        queue = validation.queue_name(request.queue)
        if request.state not in _CLEANABLE:
            raise InvalidArgument(
                "state", "must be waiting, delayed, completed, failed or cancelled"
            )
        if request.grace_ms > limits.MAX_DURATION_MS:
            raise InvalidArgument("grace_ms", "must be at most ten years")
        limit = validation.bounded(request.limit, "limit", 1_000, 1, MAX_CLEAN)
        ids = await self.queues.clean(queue, request.state, request.grace_ms, limit)
        return pb.CleanQueueResponse(job_ids=ids)

    @unary
    async def ObliterateQueue(
        self, request: pb.ObliterateQueueRequest, context: Context
    ) -> pb.ObliterateQueueResponse:
        queue = validation.queue_name(request.queue)
        removed = await self.queues.obliterate(queue, request.force)
        return pb.ObliterateQueueResponse(removed=removed)

    @unary
    async def RetryFailedJobs(
        self, request: pb.RetryFailedJobsRequest, context: Context
    ) -> pb.RetryFailedJobsResponse:
        queue = validation.queue_name(request.queue)
        return pb.RetryFailedJobsResponse(retried=await self.queues.retry_failed(queue))

    @unary
    async def PromoteDelayedJobs(
        self, request: pb.PromoteDelayedJobsRequest, context: Context
    ) -> pb.PromoteDelayedJobsResponse:
        queue = validation.queue_name(request.queue)
        return pb.PromoteDelayedJobsResponse(promoted=await self.queues.promote_delayed(queue))

    @unary
    async def UpdateQueueSettings(
        self, request: pb.UpdateQueueSettingsRequest, context: Context
    ) -> pb.UpdateQueueSettingsResponse:
        queue = validation.queue_name(request.queue)
        settings = request.settings
        _rate_limit(settings.rate_limit, "settings.rate_limit")
        _rate_limit(settings.group_rate_limit, "settings.group_rate_limit")
        if settings.max_stalled > 1_000:
            raise InvalidArgument("settings.max_stalled", "must be at most 1000")
        stored = await self.queues.update_settings(queue, settings)
        return pb.UpdateQueueSettingsResponse(settings=stored)

    @unary
    async def ListWorkers(
        self, request: pb.ListWorkersRequest, context: Context
    ) -> pb.ListWorkersResponse:
        return await self.feed.list_workers(request)

    @server_stream
    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: Context
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        async for response in self.feed.watch(request):
            yield response

    @unary
    async def UpsertSchedule(
        self, request: pb.UpsertScheduleRequest, context: Context
    ) -> pb.UpsertScheduleResponse:
        return await self.schedules.upsert(request)

    @unary
    async def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: Context
    ) -> pb.ListSchedulesResponse:
        return await self.schedules.list(request)

    @unary
    async def GetSchedule(
        self, request: pb.GetScheduleRequest, context: Context
    ) -> pb.GetScheduleResponse:
        return await self.schedules.get(request)

    @unary
    async def RemoveSchedule(
        self, request: pb.RemoveScheduleRequest, context: Context
    ) -> pb.RemoveScheduleResponse:
        return await self.schedules.remove(request)

    @unary
    async def SetJobSchema(
        self, request: pb.SetJobSchemaRequest, context: Context
    ) -> pb.SetJobSchemaResponse:
        queue = validation.queue_name(request.queue)
        name = validation.job_name(request.name, "name")
        changed = await self.parts.schemas.set(queue, name, request.schema)
        return pb.SetJobSchemaResponse(changed=changed)

    @unary
    async def ListJobSchemas(
        self, request: pb.ListJobSchemasRequest, context: Context
    ) -> pb.ListJobSchemasResponse:
        queue = validation.queue_name(request.queue)
        pairs = await self.parts.schemas.list(queue)
        return pb.ListJobSchemasResponse(
            schemas=[pb.JobSchema(name=name, schema=text) for name, text in pairs]
        )
