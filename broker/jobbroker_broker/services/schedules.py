"""QueueService's repeatable jobs (being written)."""

from __future__ import annotations

from jobbroker.v1 import queue_service_pb2 as pb

from .common import Parts
from .queue_feed import NotServedYet


class Schedules:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    async def upsert(self, request: pb.UpsertScheduleRequest) -> pb.UpsertScheduleResponse:
        raise NotServedYet("schedules are not served yet")

    async def list(self, request: pb.ListSchedulesRequest) -> pb.ListSchedulesResponse:
        raise NotServedYet("schedules are not served yet")

    async def get(self, request: pb.GetScheduleRequest) -> pb.GetScheduleResponse:
        raise NotServedYet("schedules are not served yet")

    async def remove(self, request: pb.RemoveScheduleRequest) -> pb.RemoveScheduleResponse:
        raise NotServedYet("schedules are not served yet")
