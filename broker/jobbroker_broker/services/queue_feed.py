"""QueueService's event feed and worker registry (being written)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from jobbroker.v1 import queue_service_pb2 as pb

from ..errors import BrokerError
from .common import Parts


class NotServedYet(BrokerError):
    reason = "UNIMPLEMENTED"


class QueueFeed:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def watch(self, request: pb.WatchEventsRequest) -> AsyncIterator[pb.WatchEventsResponse]:
        raise NotServedYet("WatchEvents is not served yet")

    async def list_workers(self, request: pb.ListWorkersRequest) -> pb.ListWorkersResponse:
        raise NotServedYet("ListWorkers is not served yet")
