"""grpc.health.v1: SERVING while Redis answers (on a cluster: every primary), NOT_SERVING while
it does not. The same loop follows Sentinel failovers."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from grpc_health.v1 import health, health_pb2

from ..storage.connection import RedisConnection

log = logging.getLogger(__name__)

SERVICES = (
    "",
    "jobbroker.v1.JobService",
    "jobbroker.v1.WorkerService",
    "jobbroker.v1.QueueService",
)


class Health:
    def __init__(self, connection: RedisConnection, interval: float) -> None:
        self.servicer = health.aio.HealthServicer()
        self.connection = connection
        self.interval = interval
        self.serving: bool | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def set(self, serving: bool) -> None:
        if serving == self.serving:
            return
        if serving and self.serving is False:
            # Redis came back (maybe restarted): every pooled connection may be dead. Drop them
            # all now, so no call fails on a stale one after health says SERVING.
            await self.connection.reset()
        self.serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in SERVICES:
            await self.servicer.set(service, status)
        log.log(
            logging.INFO if serving else logging.WARNING,
            "health: %s",
            "SERVING" if serving else "NOT_SERVING (redis unreachable)",
        )

    async def check(self) -> None:
        # A Sentinel failover is noticed here too, within one interval: every connection is
        # dropped then, so blocked reads and long-polls move to the new primary.
        await self.connection.follow()
        await self.set(await self.connection.ping())

    async def _run(self) -> None:
        # A flag ends the loop: redis-py may turn a cancellation during PING into a
        # connection error, which the check treats as "Redis down" and survives.
        while not self._stopping:
            await self.check()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="health")

    async def shutdown(self) -> None:
        """Stop checking and answer NOT_SERVING from now on (again: nothing more)."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.servicer.enter_graceful_shutdown()
