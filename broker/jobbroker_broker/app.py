"""Build and run one broker: the grpc.aio server over the Redis store."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from jobbroker.v1 import (
    job_service_pb2,
    job_service_pb2_grpc,
    queue_service_pb2,
    queue_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .events import EventHub
from .health import Health
from .maintenance import Maintenance
from .packing import pack_with_hiredis
from .registry import WorkerRegistry
from .scheduler import ScheduleLoop
from .services.common import Parts
from .services.jobs import JobService
from .services.queues import QueueService
from .services.workers import WorkerService
from .settings import Settings
from .store import Store, redis_errors

log = logging.getLogger("jobbroker_broker")

EVICTING_POLICIES = ("allkeys-", "volatile-")


class ConfigError(Exception):
    """The broker cannot start with this configuration; the message says why."""


def redis_client(settings: Settings, *, blocking: bool = False) -> Redis:
    """A client that fails fast: no retries (a retried write could apply twice), short timeouts.
    The blocking client's reads wait longer than an XREAD BLOCK."""
    timeout = settings.redis_timeout + (2.0 if blocking else 0.0)
    client = Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_connect_timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    pack_with_hiredis(client)
    return client


async def check_eviction_policy(client: Redis, settings: Settings) -> None:
    try:
        with redis_errors():
            config = await client.config_get("maxmemory-policy")
    except Exception as exc:  # managed Redis may forbid CONFIG: say so, do not refuse
        log.warning("could not read maxmemory-policy (%s); make sure Redis never evicts keys", exc)
        return
    values: dict[Any, Any] = dict(config)
    raw = values.get(b"maxmemory-policy") or values.get("maxmemory-policy", b"")
    policy = raw.decode() if isinstance(raw, bytes) else str(raw)
    if policy.startswith(EVICTING_POLICIES):
        message = (
            f"Redis maxmemory-policy is {policy!r}: Redis may evict job keys under memory "
            "pressure and jobs would vanish without a trace. Set it to 'noeviction' "
            "(CONFIG SET maxmemory-policy noeviction), or start with --allow-evicting-redis "
            "if you accept that risk."
        )
        if not settings.allow_evicting_redis:
            raise ConfigError(message)
        log.warning("%s (allowed by --allow-evicting-redis)", message)


class Broker:
    """One broker process' server. ``await start()``, then ``await stop()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        settings = self.settings
        self.redis = redis_client(settings)
        self.blocking_redis = redis_client(settings, blocking=True)
        await check_eviction_policy(self.redis, settings)
        self.store = Store(self.redis, settings)
        self.hub = EventHub(self.store, self.blocking_redis)
        self.maintenance = Maintenance(self.store)
        self.health = Health(
            self.store,
            settings.health_interval,
            (self.redis.connection_pool, self.blocking_redis.connection_pool),
        )
        parts = Parts(settings, self.store, self.hub, self.maintenance, WorkerRegistry(self.store))

        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ]
        )
        job_service_pb2_grpc.add_JobServiceServicer_to_server(JobService(parts), server)
        worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(WorkerService(parts), server)
        queue_service_pb2_grpc.add_QueueServiceServicer_to_server(QueueService(parts), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, server)
        reflection.enable_server_reflection(
            (
                job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
                worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
                queue_service_pb2.DESCRIPTOR.services_by_name["QueueService"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        self.port = server.add_insecure_port(f"{settings.host}:{settings.port}")
        await self.health.check()
        await server.start()
        self.server = server
        self.health.start()
        self.maintenance.start()
        self.schedule_loop = ScheduleLoop(self.store)
        self.schedule_loop.start()
        log.info(
            "broker listening on %s:%d (redis %s)", settings.host, self.port, settings.redis_url
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        if self.server is None:
            return
        await self.health.shutdown()
        await self.server.stop(self.settings.shutdown_grace if grace is None else grace)
        await self.maintenance.close()
        await self.schedule_loop.close()
        await self.hub.close()
        await self.redis.aclose()
        await self.blocking_redis.aclose()
        self.server = None

    async def wait(self) -> None:
        if self.server is not None:
            await self.server.wait_for_termination()
