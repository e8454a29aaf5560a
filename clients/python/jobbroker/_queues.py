"""QueueCalls: AsyncClient's operator calls on the broker's QueueService (queue counts, pause and
resume, bulk clean-ups, settings, workers, the queue-wide event feed and schedules).

A base class of :class:`~jobbroker.AsyncClient`, kept apart so each module holds one concept;
its calls go through the client's :class:`~jobbroker._transport.Transport` (channel, deadlines,
retries, stream resumption). A new queue call is one method here: build the request, call
``self._transport.unary(self._queues().Method, request, timeout=timeout)`` (``idempotent=False``
when repeating it could do its work twice), convert the reply; the synchronous ``Client``
gets it with one line in ``_sync.py`` (a test checks that none is missing).
"""

# `timeout=` is a call's gRPC deadline (see _async.py).
# ruff: noqa: ASYNC109

from __future__ import annotations

import builtins
import contextlib
import logging
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from . import _calls
from ._transport import ServiceCalls
from .errors import JobBrokerError, LimitExceeded
from .models import Event, EventType, JobOptions, JobState, Seconds
from .queue_models import QueueInfo, QueueSettings, RateLimit, Schedule, WorkerInfo
from .schemas import SchemaLike, schema_text
from .v1 import queue_service_pb2 as pb
from .v1.queue_service_pb2_grpc import QueueServiceStub

if TYPE_CHECKING:
    from .v1.queue_service_pb2_grpc import QueueServiceAsyncStub

log = logging.getLogger("jobbroker.client")


class QueueCalls(ServiceCalls):
    """The operators' calls of :class:`~jobbroker.AsyncClient` (see docs/client.md, "Queues").

    Reads, pause/resume, settings and schedule calls are retried on UNAVAILABLE; the bulk
    operations (drain, clean, obliterate, retry_failed, promote_delayed) are not: one whose
    answer was lost may have done its work, and a repeat would act on jobs added since.
    """

    def _queues(self) -> QueueServiceAsyncStub:
        return self._transport.stub(QueueServiceStub)

    async def queues(self, *, timeout: float | None = None) -> builtins.list[QueueInfo]:
        """Every queue the broker knows, by name, with its counts, pause flag and settings."""
        reply = await self._transport.unary(
            self._queues().ListQueues, pb.ListQueuesRequest(), timeout=timeout
        )
        return [QueueInfo.from_proto(info) for info in reply.queues]

    async def queue(self, queue: str, *, timeout: float | None = None) -> QueueInfo:
        """One queue's counts, pause flag and settings (a queue never used has zero counts)."""
        request = pb.GetQueueRequest(queue=queue)
        reply = await self._transport.unary(self._queues().GetQueue, request, timeout=timeout)
        return QueueInfo.from_proto(reply.queue)

    async def pause(self, queue: str, *, timeout: float | None = None) -> None:
        """Pause a queue: no worker of any broker replica gets a job from it until resumed.
        Jobs can still be added; active jobs run on. Pausing a paused queue is harmless."""
        request = pb.PauseQueueRequest(queue=queue)
        await self._transport.unary(self._queues().PauseQueue, request, timeout=timeout)

    async def resume(self, queue: str, *, timeout: float | None = None) -> None:
        """Resume a paused queue (resuming one that is not paused is harmless)."""
        request = pb.ResumeQueueRequest(queue=queue)
        await self._transport.unary(self._queues().ResumeQueue, request, timeout=timeout)

    async def drain(
        self, queue: str, include_delayed: bool = False, *, timeout: float | None = None
    ) -> int:
        """Remove the waiting jobs (and the delayed ones with ``include_delayed``); how many.
        Active and finished jobs stay. Not retried."""
        request = pb.DrainQueueRequest(queue=queue, include_delayed=include_delayed)
        reply = await self._transport.unary(
            self._queues().DrainQueue, request, timeout=timeout, idempotent=False
        )
        return reply.removed

    async def clean(
        self,
        queue: str,
        state: JobState | str,
        grace: Seconds = 0,
        limit: int = 1000,
        *,
        timeout: float | None = None,
    ) -> builtins.list[str]:
        """Remove up to ``limit`` (1-100,000) jobs in ``state`` (completed, failed, cancelled,
        waiting or delayed; not active) that entered it at least ``grace`` seconds ago; the ids
        removed. Not retried."""
        request = _calls.clean_request(queue, state, grace, limit)
        reply = await self._transport.unary(
            self._queues().CleanQueue, request, timeout=timeout, idempotent=False
        )
        return builtins.list(reply.job_ids)

    async def obliterate(
        self, queue: str, force: bool = False, *, timeout: float | None = None
    ) -> int:
        """Remove everything of a queue (jobs, logs, events, settings, schedules); the number
        of jobs removed. With active jobs it raises :class:`~jobbroker.errors.JobActive`
        unless ``force`` (their workers' calls then fail with NOT_FOUND). Not retried."""
        request = pb.ObliterateQueueRequest(queue=queue, force=force)
        reply = await self._transport.unary(
            self._queues().ObliterateQueue, request, timeout=timeout, idempotent=False
        )
        return reply.removed

    async def retry_failed(self, queue: str, *, timeout: float | None = None) -> int:
        """Move every failed job back to waiting with fresh attempts; how many. Not retried."""
        request = pb.RetryFailedJobsRequest(queue=queue)
        reply = await self._transport.unary(
            self._queues().RetryFailedJobs, request, timeout=timeout, idempotent=False
        )
        return reply.retried

    async def promote_delayed(self, queue: str, *, timeout: float | None = None) -> int:
        """Make every delayed job waiting now; how many. Not retried."""
        request = pb.PromoteDelayedJobsRequest(queue=queue)
        reply = await self._transport.unary(
            self._queues().PromoteDelayedJobs, request, timeout=timeout, idempotent=False
        )
        return reply.promoted

    async def update_settings(
        self,
        queue: str,
        *,
        rate_limit: RateLimit | None = None,
        concurrency: int = 0,
        group_rate_limit: RateLimit | None = None,
        max_stalled: int = 0,
        timeout: float | None = None,
    ) -> QueueSettings:
        """Replace a queue's settings as a whole (an argument left out is reset to "no limit"
        / the broker's default); the settings now in force. Enforced at lease time across all
        workers and broker replicas: ``rate_limit=RateLimit(10, 1)`` starts at most 10 jobs a
        second, ``concurrency`` caps the queue's active jobs, ``group_rate_limit`` applies per
        ``JobOptions.group``, ``max_stalled`` is the stalls a job survives."""
        settings = _calls.queue_settings(rate_limit, concurrency, group_rate_limit, max_stalled)
        request = pb.UpdateQueueSettingsRequest(queue=queue, settings=settings.to_proto())
        reply = await self._transport.unary(
            self._queues().UpdateQueueSettings, request, timeout=timeout
        )
        return QueueSettings.from_proto(reply.settings)

    async def workers(
        self, queue: str, *, timeout: float | None = None
    ) -> builtins.list[WorkerInfo]:
        """The workers seen leasing from a queue in the last minute, most recent first."""
        request = pb.ListWorkersRequest(queue=queue)
        reply = await self._transport.unary(self._queues().ListWorkers, request, timeout=timeout)
        return [WorkerInfo.from_proto(worker) for worker in reply.workers]

    async def watch_events(
        self, queue: str, *, after_event_id: str = "", timeout: float | None = None
    ) -> AsyncGenerator[Event, None]:
        """Every event of a queue as it happens (Bull's ``QueueEvents``): job events and the
        queue's own (paused, resumed, cleaned, purged, drained). Without an end: stop iterating (or
        give ``timeout``, which bounds the whole stream) to stop.

        With ``after_event_id`` (an event's ``id``) it starts after that event; without, with
        the events from now on. If the broker becomes unreachable, the client reconnects
        (whatever ``retries`` says, until ``timeout``) and resumes after the last event it
        delivered (before the first event, from where the watch started: the broker tells it
        first). A caller
        that falls behind is not cut off: the broker reads the events it could not hold back
        from the queue's stream (and a broker that does end such a watcher is resumed from at
        once). Should the queue have trimmed events before they were delivered, the stream
        yields an event of type ``EventType.GAP`` in their place, ``count`` saying how many
        were lost (0 when the broker cannot tell), then goes on from the oldest event kept:
        never a silent loss. Size ``--events-maxlen`` for the lag you expect (docs/queues.md).
        """

        def request(after: str) -> pb.WatchEventsRequest:
            return pb.WatchEventsRequest(queue=queue, after_event_id=after, send_start=True)

        def convert(item: pb.WatchEventsResponse, last: str) -> tuple[list[Event], str]:
            if not item.HasField("event"):  # where the watch starts: a resume point, no event
                log.debug(
                    "watch of queue %s starts after event %s",
                    queue,
                    item.start_event_id,
                    extra={"queue": queue},
                )
                return [], item.start_event_id or last
            event = Event.from_proto(item.event)
            if not item.resume_point_trimmed:
                return [event], item.event.event_id or last
            log.warning(
                "queue %s no longer keeps event %s: events after it were lost (%s)",
                queue,
                last,
                item.events_lost or "some",
                extra={"queue": queue},
            )
            gap = Event(
                id=last,
                type=EventType.GAP,
                queue=queue,
                job_id="",
                timestamp=None,
                count=item.events_lost,
            )
            return [gap, event], item.event.event_id or last

        stream = self._transport.resumable(
            lambda: self._queues().WatchEvents,
            request,
            convert,
            after_event_id,
            timeout,
            resume_on=_fell_behind,
        )
        async with contextlib.aclosing(stream):
            async for events in stream:
                for event in events:
                    yield event

    async def upsert_schedule(
        self,
        queue: str,
        key: str,
        name: str,
        data: Any = None,
        *,
        cron: str | None = None,
        every: Seconds | None = None,
        timezone: str = "",
        limit: int = 0,
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        options: JobOptions | None = None,
        timeout: float | None = None,
    ) -> Schedule:
        """Create or replace the repeatable job ``key`` of a queue (Bull's repeatable jobs):
        a job ``name`` with ``data`` and ``options`` added on a ``cron`` expression (read in
        ``timezone``, default UTC) or ``every`` so many seconds, at most ``limit`` times,
        between ``start_at`` and ``end_at``. Exactly one of ``cron`` and ``every``. The
        schedule as stored, with its ``next_run_at``. Retried: an upsert is idempotent."""
        schedule = _calls.schedule(
            queue,
            key,
            name,
            data,
            cron=cron,
            every=every,
            timezone=timezone,
            limit=limit,
            start_at=start_at,
            end_at=end_at,
            options=options,
        )
        request = pb.UpsertScheduleRequest(schedule=schedule.to_proto())
        reply = await self._transport.unary(self._queues().UpsertSchedule, request, timeout=timeout)
        return Schedule.from_proto(reply.schedule)

    async def schedules(
        self, queue: str, *, timeout: float | None = None
    ) -> builtins.list[Schedule]:
        """A queue's repeatable jobs, by next run time."""
        request = pb.ListSchedulesRequest(queue=queue)
        reply = await self._transport.unary(self._queues().ListSchedules, request, timeout=timeout)
        return [Schedule.from_proto(schedule) for schedule in reply.schedules]

    async def schedule(self, queue: str, key: str, *, timeout: float | None = None) -> Schedule:
        """One repeatable job. Raises :class:`~jobbroker.JobNotFound` (NOT_FOUND) for none."""
        request = pb.GetScheduleRequest(queue=queue, key=key)
        reply = await self._transport.unary(self._queues().GetSchedule, request, timeout=timeout)
        return Schedule.from_proto(reply.schedule)

    async def remove_schedule(self, queue: str, key: str, *, timeout: float | None = None) -> None:
        """Remove a repeatable job; the jobs it already added stay."""
        request = pb.RemoveScheduleRequest(queue=queue, key=key)
        await self._transport.unary(self._queues().RemoveSchedule, request, timeout=timeout)

    # --- job data schemas (docs/schemas.md) ---------------------------------------------

    async def set_job_schema(
        self, queue: str, name: str, schema: SchemaLike, *, timeout: float | None = None
    ) -> bool:
        """Make the broker check the data of every job named ``name`` added to ``queue``
        against ``schema`` (a JSON Schema dict, JSON text or a pydantic model); ``None``
        removes the check. Whether the stored schema changed."""
        request = pb.SetJobSchemaRequest(queue=queue, name=name, schema=schema_text(schema))
        reply = await self._transport.unary(self._queues().SetJobSchema, request, timeout=timeout)
        return reply.changed

    async def job_schemas(self, queue: str, *, timeout: float | None = None) -> dict[str, Any]:
        """The queue's job data schemas, by job name."""
        request = pb.ListJobSchemasRequest(queue=queue)
        reply = await self._transport.unary(self._queues().ListJobSchemas, request, timeout=timeout)
        return {item.name: orjson.loads(item.schema) for item in reply.schemas}


def _fell_behind(error: JobBrokerError) -> bool:
    """The broker ended a watcher that fell too far behind: resume after its last event."""
    return isinstance(error, LimitExceeded) and error.limit == "watch_backlog"
