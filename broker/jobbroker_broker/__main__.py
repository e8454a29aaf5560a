"""``python -m jobbroker_broker``: run one broker process."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from collections.abc import AsyncIterator

from jobbroker.logs import configure as configure_logging

from . import config
from .config import ConfigError
from .server.app import Broker
from .settings import Settings
from .storage.embedded import EmbeddedRedis, EmbeddedRedisError

STOP_SLACK = 5.0
"""Seconds a broker's stop may take beyond its shutdown grace before we stop waiting."""

log = logging.getLogger("jobbroker_broker")


def parse_settings(argv: list[str] | None = None) -> Settings:
    """The settings of ``argv``, the environment and the ``--config`` file; exits with a
    message naming the setting when one is bad."""
    try:
        return config.load(argv)[0]
    except ConfigError as exc:
        sys.exit(f"jobbroker: {exc}")


@dataclasses.dataclass
class Running:
    """A started broker, and the embedded Redis under it when no Redis URL was configured."""

    broker: Broker
    settings: Settings
    """The settings in force (``redis_url`` filled in when Redis is embedded)."""
    embedded: EmbeddedRedis | None

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.broker.port}"


@contextlib.asynccontextmanager
async def running_broker(settings: Settings) -> AsyncIterator[Running]:
    """Start the broker (and first the embedded Redis, when ``redis_url`` is empty); on exit
    stop the broker, then SHUTDOWN the embedded Redis so its AOF is flushed.

    Call it on the main thread: the embedded Redis is told to die with the thread that starts it.
    """
    embedded: EmbeddedRedis | None = None
    if not settings.redis_url:
        embedded = EmbeddedRedis(
            settings.data_dir, port=settings.embedded_redis_port, binary=settings.redis_server
        )
        settings = dataclasses.replace(settings, redis_url=embedded.start())
    try:
        broker = Broker(settings)
        try:
            await broker.start()
            yield Running(broker, settings, embedded)
        finally:
            await _stop(broker, settings)
    finally:
        if embedded is not None:
            embedded.stop()


async def _stop(broker: Broker, settings: Settings) -> None:
    # Bounded, so the embedded Redis is always shut down cleanly after it, even should a
    # background task of the broker swallow its cancellation.
    limit = settings.shutdown_grace + STOP_SLACK
    try:
        async with asyncio.timeout(limit):
            await broker.stop()
    except TimeoutError:
        log.error("the broker did not stop within %.0f s; going on with the shutdown", limit)


def describe_redis(running: Running) -> str:
    """One line telling which Redis the broker uses."""
    embedded = running.embedded
    if embedded is None:
        return f"redis: {running.settings.redis_url}"
    return (
        f"redis: embedded redis-server (pid {embedded.pid}) on {embedded.url}, "
        f"AOF persistence in {embedded.data_dir}"
    )


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM and SIGINT (Ctrl-C)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


def reload_tokens_on_sighup(broker: Broker) -> None:
    """Re-read the token file on SIGHUP."""
    with contextlib.suppress(NotImplementedError, AttributeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, broker.reload_tokens)


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)
    async with running_broker(settings) as running:
        reload_tokens_on_sighup(running.broker)
        print(describe_redis(running), flush=True)
        print(f"jobbroker listening on {running.address}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    try:
        configure_logging(settings.log_format, settings.log_level)
    except ValueError as exc:
        sys.exit(f"jobbroker: {exc}")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(settings))
    except (ConfigError, EmbeddedRedisError) as exc:
        sys.exit(f"jobbroker: {exc}")
    except RuntimeError as exc:
        sys.exit(f"jobbroker: {bind_error(settings, exc) or exc}")


def bind_error(settings: Settings, exc: RuntimeError) -> str:
    """A plain message when ``exc`` is gRPC failing to bind the port; else empty."""
    if "Failed to bind" not in str(exc):
        return ""
    return (
        f"cannot listen on {settings.host}:{settings.port}: the address is taken (another "
        "broker?) or not local; choose another with --port / --host"
    )


if __name__ == "__main__":
    main()
