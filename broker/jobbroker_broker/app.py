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
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .config import ConfigError
from .events import EventHub
from .gate import Gate
from .health import Health
from .maintenance import Maintenance
from .registry import WorkerRegistry
from .scheduler import ScheduleLoop
from .services.common import Parts
from .services.jobs import JobService
from .services.queues import QueueService
from .services.workers import WorkerService
from .settings import Settings
from .store import Store, redis_errors
from .streams import OpenStreams
from .token_watch import TokenWatch
from .tokens import TokenBook, TokenFileError, load

log = logging.getLogger("jobbroker_broker")

EVICTING_POLICIES = ("allkeys-", "volatile-")


def redis_client(settings: Settings, *, blocking: bool = False) -> Redis:
    """A client that fails fast: no retries (a retried write could apply twice), short timeouts.
    The blocking client's reads wait longer than an XREAD BLOCK. Calls beyond the pool's
    connections wait for one (up to the reply timeout) instead of failing."""
    timeout = settings.redis_timeout + (2.0 if blocking else 0.0)
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=timeout,
        socket_connect_timeout=settings.redis_connect_timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    client = Redis(connection_pool=pool)
    client.auto_close_connection_pool = True
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


def load_tokens(settings: Settings) -> TokenBook | None:
    if not settings.auth_tokens_file:
        return None
    try:
        return load(settings.auth_tokens_file)
    except TokenFileError as exc:
        raise ConfigError(f"--auth-tokens-file: {exc}") from None


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials of the gRPC port; None without ``tls_cert_file``."""
    if not settings.tls_cert_file:
        return None

    def read(name: str) -> bytes:
        path = getattr(settings, name)
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise ConfigError(f"--{name.replace('_', '-')}: cannot read {path} ({exc})") from None

    client_ca = read("tls_client_ca_file") if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(read("tls_key_file"), read("tls_cert_file"))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


class Broker:
    """One broker process' server. ``await start()``, then ``await stop()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.token_watch: TokenWatch | None = None

    async def start(self) -> int:
        settings = self.settings
        book = load_tokens(settings)
        credentials = server_credentials(settings)
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
        self.streams = OpenStreams(settings.max_streams_per_token)
        parts = Parts(
            settings,
            self.store,
            self.hub,
            self.maintenance,
            WorkerRegistry(self.store),
            self.streams,
        )
        self.gate = Gate(settings, book)
        server = grpc.aio.server(
            interceptors=[self.gate],
            options=[
                # Messages over the limit are refused by the gate with a clear message; gRPC
                # itself drops anything over twice the limit before reading it.
                ("grpc.max_receive_message_length", 2 * settings.max_message_bytes),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
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
        address = f"{settings.host}:{settings.port}"
        if credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, credentials)
        await self.health.check()
        await server.start()
        self.server = server
        self.health.start()
        self.maintenance.start()
        self.schedule_loop = ScheduleLoop(self.store)
        self.schedule_loop.start()
        if book is not None:
            self.token_watch = TokenWatch(settings.auth_tokens_file, self.gate, self.streams)
            self.token_watch.start()
        log.info(
            "broker listening on %s:%d (%s, %s; redis %s)",
            settings.host,
            self.port,
            "TLS" if credentials is not None else "plaintext",
            f"{len(book.entries)} tokens" if book is not None else "no authentication",
            settings.redis_url,
        )
        if book is None:
            log.warning(
                "authentication is off: anyone who can reach %s:%d may call every method "
                "(give --auth-tokens-file to require tokens)",
                settings.host,
                self.port,
            )
        return self.port

    def reload_tokens(self) -> None:
        """Re-read the token file now (SIGHUP)."""
        if self.token_watch is not None:
            self.token_watch.reload()

    async def stop(self, grace: float | None = None) -> None:
        if self.server is None:
            return
        grace = self.settings.shutdown_grace if grace is None else grace
        # Health first, so balancers and clients stop sending here; then long polls return
        # empty and streams end (worker streams after acknowledging what they applied) with
        # UNAVAILABLE, which clients take as "reconnect"; unary calls in flight get `grace`.
        await self.health.shutdown()
        ended = self.streams.shut_down()
        log.info("shutting down: %d streams ended, %.1f s grace for calls in flight", ended, grace)
        await self.server.stop(grace)
        if self.token_watch is not None:
            await self.token_watch.close()
        await self.maintenance.close()
        await self.schedule_loop.close()
        await self.hub.close()
        await self.redis.aclose()
        await self.blocking_redis.aclose()
        self.server = None

    async def wait(self) -> None:
        if self.server is not None:
            await self.server.wait_for_termination()
