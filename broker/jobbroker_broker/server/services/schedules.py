"""QueueService's repeatable jobs: Upsert/List/Get/RemoveSchedule."""

from __future__ import annotations

from jobbroker import limits
from jobbroker.v1 import queue_service_pb2 as pb

from ...errors import InvalidArgument
from ...storage import cron
from ...storage.schedule_store import ScheduleStore
from .. import validation
from .common import Parts

F = "schedule"


def schedule_key(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not validation.QUEUE_NAME.fullmatch(value):
        raise InvalidArgument(field, "must be 1-128 characters from A-Z a-z 0-9 . _ : -")
    return value


def normalized(request: pb.UpsertScheduleRequest) -> pb.Schedule:
    """The schedule to store: checked, time zone defaulted, output-only fields cleared."""
    schedule = pb.Schedule()
    schedule.CopyFrom(request.schedule)
    schedule.ClearField("next_run_at_ms")
    schedule.ClearField("runs")
    validation.queue_name(schedule.queue, f"{F}.queue")
    schedule_key(schedule.key, f"{F}.key")
    if schedule.options.job_id:
        raise InvalidArgument(f"{F}.options.job_id", "must be empty: each run gets its own id")
    if schedule.options.delay_ms:
        raise InvalidArgument(f"{F}.options.delay_ms", "must be empty: runs start on time")
    if schedule.cron and schedule.every_ms:
        raise InvalidArgument(f"{F}.every_ms", "must be empty when cron is set")
    try:
        cron.zone_of(schedule.timezone)
        if schedule.cron:
            schedule.cron = " ".join(schedule.cron.split())
            cron.check_cron(schedule.cron, schedule.timezone)
    except cron.BadTiming as bad:
        raise InvalidArgument(f"{F}.{bad.field}", bad.problem) from None
    if not schedule.cron:
        if not schedule.every_ms:
            raise InvalidArgument(f"{F}.cron", "one of cron and every_ms is required")
        if not limits.MIN_EVERY_MS <= schedule.every_ms <= limits.MAX_DURATION_MS:
            raise InvalidArgument(
                f"{F}.every_ms",
                f"must be between {limits.MIN_EVERY_MS} and {limits.MAX_DURATION_MS}",
            )
    schedule.timezone = schedule.timezone or "UTC"
    if schedule.start_at_ms < 0:
        raise InvalidArgument(f"{F}.start_at_ms", "must be 0 (now) or a time in ms since epoch")
    if schedule.end_at_ms < 0:
        raise InvalidArgument(f"{F}.end_at_ms", "must be 0 (never) or a time in ms since epoch")
    if schedule.end_at_ms and schedule.end_at_ms < schedule.start_at_ms:
        raise InvalidArgument(f"{F}.end_at_ms", "must not be before start_at_ms")
    return schedule


class Schedules:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.store = ScheduleStore(parts.store)

    async def upsert(self, request: pb.UpsertScheduleRequest) -> pb.UpsertScheduleResponse:
        if not request.HasField("schedule"):
            raise InvalidArgument(F, "is required")
        schedule = normalized(request)
        job = validation.new_job(
            schedule.name, schedule.data, schedule.options, F, self.parts.settings
        )
        # The jobs it adds are checked now, once: a schedule's data never changes between runs.
        if schemas := await self.parts.schemas.of(schedule.queue):  # job_schemas.py
            schemas.check(job, f"{F}.")
        stored = await self.store.upsert(schedule, job)
        return pb.UpsertScheduleResponse(schedule=stored)

    async def list(self, request: pb.ListSchedulesRequest) -> pb.ListSchedulesResponse:
        queue = validation.queue_name(request.queue)
        return pb.ListSchedulesResponse(schedules=await self.store.in_queue(queue))

    async def get(self, request: pb.GetScheduleRequest) -> pb.GetScheduleResponse:
        queue = validation.queue_name(request.queue)
        key = schedule_key(request.key, "key")
        return pb.GetScheduleResponse(schedule=await self.store.get(queue, key))

    async def remove(self, request: pb.RemoveScheduleRequest) -> pb.RemoveScheduleResponse:
        queue = validation.queue_name(request.queue)
        key = schedule_key(request.key, "key")
        await self.store.remove(queue, key)
        return pb.RemoveScheduleResponse()
