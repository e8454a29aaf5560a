"""Build and run one broker: the grpc.aio server over the Redis store."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging

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

from ..loops import Loop
from ..loops.events import EventHub
from ..loops.maintenance import Maintenance
from ..loops.registry import WorkerRegistry
from ..loops.scheduler import ScheduleLoop
from ..loops.switch_watch import SwitchWatch
from ..metrics import Metrics
from ..settings import ConfigError, Settings
from ..storage.connection import RedisConnection
from ..storage.store import Store, redis_errors
from . import tracing
from .gate import Gate
from .health import Health
from .metrics_server import MetricsEndpoint
from .rpc_metrics import RpcMetrics
from .services.common import Parts
from .services.jobs import JobService
from .services.queues import QueueService
from .services.workers import WorkerService
from .streams import OpenStreams
from .test_clock import QueueClocks
from .token_watch import TokenWatch
from .tokens import TokenBook, TokenFileError, load

log = logging.getLogger("jobbroker_broker")

EVICTING_POLICIES = ("allkeys-", "volatile-")
_MIN_BACKLOG = 3_000
"""gRPC core's own bound on calls not yet taken by the server; never go below it."""


__all__ = ["Broker", "ConfigError", "State", "check_eviction_policy"]


async def check_eviction_policy(connection: RedisConnection, settings: Settings) -> None:
    """Refuse a Redis (any primary of a cluster) that may evict keys."""
    try:
        with redis_errors():
            policies = await connection.config_per_primary("maxmemory-policy")
    except Exception as exc:  # managed Redis may forbid CONFIG: say so, do not refuse
        log.warning("could not read maxmemory-policy (%s); make sure Redis never evicts keys", exc)
        return
    policy = next((p for p in policies if p.startswith(EVICTING_POLICIES)), "")
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


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """The grpc.aio server's channel arguments."""
    # grpc.aio takes new calls from gRPC core one per turn of the event loop; a burst waits in
    # core's queue of calls not yet taken. Past that queue's default bound (1,000, and above
    # it a growing share up to 3,000) core failed the excess with a bare CANCELLED the broker
    # never saw: 5,000 StreamProgress opened at once got ~60 % of their snapshots. The queue
    # now holds twice what one caller may open (see docs/operations.md, "Bursts of calls").
    backlog = max(_MIN_BACKLOG, 2 * settings.max_streams_per_token)
    return [
        # Messages over the limit are refused by the gate with a clear message; gRPC itself
        # drops anything over twice the limit before reading it.
        ("grpc.max_receive_message_length", 2 * settings.max_message_bytes),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.so_reuseport", 0),
        ("grpc.server.max_pending_requests", backlog),
        ("grpc.server.max_pending_requests_hard_limit", backlog),
        # Keepalive (docs/operations.md, "Dead connections"). Accept clients' pings as often
        # as every 10 s (the clients ping every 20 s; gRPC's default refuses more than one
        # every 5 minutes with a GOAWAY), with or without calls open, as other languages'
        # clients may ping idle connections. And ping clients after a minute of silence, so the
        # streams of a client that vanished end within about 80 s instead of hours, giving
        # back their share of --max-streams-per-token.
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.ping_timeout_ms", 20_000),
    ]


class State(enum.Enum):
    """Where a :class:`Broker` is in its life; each state is entered once, in this order."""

    NEW = "new"
    """Made, not started (a start that failed goes straight to STOPPED)."""
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Broker:
    """One broker process' server. ``await start()``, then ``await stop()``.

    Everything ``start`` opens (the Redis pools, the event hub, the health checker, the metrics
    server, the gRPC server, the background loops) is entered on one ``AsyncExitStack`` as it
    is opened, so a start that fails half-way closes what it had opened before raising, and
    ``stop`` closes it all in the reverse order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = State.NEW
        self.server: grpc.aio.Server | None = None
        """The gRPC server while RUNNING (and STOPPING), else None."""
        self.port = 0
        self.token_watch: TokenWatch | None = None
        self.switch_watch: SwitchWatch | None = None
        """Hears Sentinel failovers as they are announced (``redis+sentinel://`` only)."""
        self.test_clock: QueueClocks | None = None
        """Moves queues' time once started, with ``Settings.test_clock`` (tests only)."""
        self._stack = contextlib.AsyncExitStack()
        self._server_grace = 0.0

    async def start(self) -> int:
        """Start serving; returns the port. On failure everything opened so far is closed
        (the broker is then STOPPED) and the error is raised."""
        if self.state is not State.NEW:
            raise RuntimeError(f"a broker starts once (this one is {self.state.value})")
        try:
            port = await self._open(self._stack)
        except BaseException:
            self.state = State.STOPPED
            self.server = None
            await self._stack.aclose()
            raise
        self.state = State.RUNNING
        return port

    async def _open(self, stack: contextlib.AsyncExitStack) -> int:
        settings = self.settings
        book = load_tokens(settings)
        credentials = server_credentials(settings)
        await self._open_redis(stack)
        server = self._build_server(book)
        stack.push_async_callback(self._stop_server, server)
        await self.health.check()
        self._start_metrics(stack)
        # Bound last: gRPC keeps the port of a server that never started until the process
        # exits, so nothing that can fail comes between binding and starting.
        address = f"{settings.host}:{settings.port}"
        if credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, credentials)
        await server.start()
        self.server = server
        self.health.start()
        stack.push_async_callback(self.health.shutdown)
        for loop in self._loops(book):
            loop.start()
            stack.push_async_callback(loop.close)
        self._log_started(book, credentials is not None)
        return self.port

    async def _open_redis(self, stack: contextlib.AsyncExitStack) -> None:
        """The Redis clients, checked (eviction policy, durability), and what reads through
        them: the store and the event hub."""
        settings = self.settings
        self.connection = RedisConnection(settings)
        stack.push_async_callback(self.connection.aclose)
        self.redis = self.connection.client
        self.blocking_redis = self.connection.blocking
        await check_eviction_policy(self.connection, settings)
        self.metrics = Metrics()
        self.store = Store(self.redis, settings, self.metrics)
        await self.store.durability.check(self.connection)
        self.hub = EventHub(self.store, self.blocking_redis)
        stack.push_async_callback(self.hub.close)

    def _build_server(self, book: TokenBook | None) -> grpc.aio.Server:
        """The gRPC server with every service (not bound, not started)."""
        settings = self.settings
        self.maintenance = Maintenance(self.store)
        self.schedule_loop = ScheduleLoop(self.store)
        if settings.test_clock:
            self.test_clock = QueueClocks(self.store, self.maintenance, self.schedule_loop)
        self.health = Health(self.connection, settings.health_interval)
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
            interceptors=[*tracing.interceptors(), RpcMetrics(self.metrics), self.gate],
            options=server_options(settings),
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
        return server

    def _start_metrics(self, stack: contextlib.AsyncExitStack) -> None:
        settings = self.settings
        self.metrics_endpoint = MetricsEndpoint(self.metrics, self.store, settings)
        try:
            self.metrics_endpoint.start()
        except (OSError, OverflowError) as exc:  # taken, not local, or not a port number
            raise ConfigError(
                f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: "
                f"{getattr(exc, 'strerror', None) or exc}; choose another with --metrics-port "
                "/ --metrics-host"
            ) from exc
        stack.push_async_callback(self.metrics_endpoint.close)

    def _loops(self, book: TokenBook | None) -> list[Loop]:
        loops: list[Loop] = [self.maintenance, self.schedule_loop]
        if self.connection.kind == "sentinel":
            self.switch_watch = SwitchWatch(self.connection)
            loops.append(self.switch_watch)
        if book is not None:
            self.token_watch = TokenWatch(self.settings.auth_tokens_file, self.gate, self.streams)
            loops.append(self.token_watch)
        return loops

    def _log_started(self, book: TokenBook | None, tls: bool) -> None:
        settings = self.settings
        log.info(
            "broker listening on %s:%d (%s, %s; redis %s)",
            settings.host,
            self.port,
            "TLS" if tls else "plaintext",
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

    async def _stop_server(self, server: grpc.aio.Server) -> None:
        await server.stop(self._server_grace)

    def reload_tokens(self) -> None:
        """Re-read the token file now (SIGHUP)."""
        if self.token_watch is not None:
            self.token_watch.reload()

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving, gracefully, and close everything; a no-op unless RUNNING."""
        if self.state is not State.RUNNING:
            return
        self.state = State.STOPPING
        try:
            await self._drain(self.settings.shutdown_grace if grace is None else grace)
        finally:
            await self._stack.aclose()
            self.server = None
            self.state = State.STOPPED

    async def _drain(self, grace: float) -> None:
        # Health first, so balancers and clients stop sending here. Then new calls are refused
        # with UNAVAILABLE / SHUTTING_DOWN (clients send them again elsewhere), long polls
        # return empty, and streams end with that status (worker streams once they have
        # acknowledged what they applied). Unary calls in flight get `grace` to finish; only
        # then does the server stop (what is left after the grace is cancelled), and then the
        # rest closes.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await self.health.shutdown()
        self.gate.close()
        ended = self.streams.shut_down()
        log.info("shutting down: %d streams ended, %.1f s grace for calls in flight", ended, grace)
        drained = await self.gate.drained(grace)
        closed = await self.streams.closed(max(0.0, deadline - loop.time()))
        if not (drained and closed):
            log.warning(
                "%d calls and %d streams still open after %.1f s; cancelling them",
                self.gate.in_flight,
                len(self.streams),
                grace,
            )
        self._server_grace = max(0.0, min(1.0, deadline - loop.time()))

    async def wait(self) -> None:
        if self.server is not None:
            await self.server.wait_for_termination()
