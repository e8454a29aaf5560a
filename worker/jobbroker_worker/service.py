"""``jobbroker-worker``: the guide's processors as a service. One Worker per queue
(``ai-tasks``, ``email``), each registering its jobs' data schemas with the broker at start-up;
SIGTERM or Ctrl-C stops them gracefully (a second signal stops at once).

    jobbroker-worker --address HOST:PORT [--queues ai-tasks,email] [--concurrency N]

Settings: docs/worker-service.md (flags, environment, ``--config FILE.toml``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from jobbroker import ConnectionSettings, Worker
from jobbroker.logs import configure as configure_logging
from jobbroker.worker import serving_gc

from .config import Config, ConfigError, load
from .metrics import ServiceMetrics

log = logging.getLogger("jobbroker_worker")

STANDIN_DELAY_S = 0.05
"""Seconds between the stand-in's tokens: slow enough to watch them arrive."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jobbroker-worker",
        description="Run the guide's ai-tasks and email processors against a jobbroker broker.",
    )
    add = p.add_argument
    add("--address", "-a", help="The broker's host:port ($JOBBROKER_ADDRESS).")
    add("--token", help="API token ($JOBBROKER_TOKEN).")
    add("--tls", action="store_true", default=None, help="TLS to the broker ($JOBBROKER_TLS).")
    add("--tls-ca", help="CA file ($JOBBROKER_TLS_CA).")
    add("--tls-cert", help="Client certificate ($JOBBROKER_TLS_CERT).")
    add("--tls-key", help="Client key ($JOBBROKER_TLS_KEY).")
    add("--config", help="A TOML file of settings ($JOBBROKER_WORKER_CONFIG).")
    add("--queues", help="ai-tasks, email, or ai-tasks,email (default both).")
    add("--concurrency", help="Jobs each queue runs at once (default 10).")
    add("--lease", help="Seconds a lease lasts without renewal, 1-3600 (default 30).")
    add("--openai-base-url", help="An OpenAI-compatible API ($OPENAI_BASE_URL).")
    add("--model", help="Chat model for jobs that name none ($JOBBROKER_AI_MODEL).")
    add("--embedding-model", help="Embedding model default ($JOBBROKER_EMBEDDING_MODEL).")
    add("--request-timeout", help="Seconds an API request waits for the server (60).")
    add("--smtp-url", help="smtp:// or smtps:// URL ($JOBBROKER_SMTP_URL).")
    add("--mail-from", help="The From address ($JOBBROKER_MAIL_FROM).")
    add("--templates", help="A directory of your own email templates.")
    add("--app-url", help="Base of the links the built-in templates make from tokens.")
    add("--conversation-store", help="module:attribute of your ConversationStore.")
    add("--metrics-port", help="Serve Prometheus metrics on this port (0: off).")
    add("--metrics-host", help="Address the metrics endpoint binds (127.0.0.1).")
    add("--log-format", help="console or json.")
    add("--log-level", help="debug, info, warning or error.")
    return p


def conversation_store(target: str) -> Any:
    """The object ``module:attribute`` names (a class or function is called once)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"conversation_store: {target!r} is not module:attribute")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"conversation_store: cannot load {target!r}: {exc}") from None
    if (callable(value) and not hasattr(value, "history")) or isinstance(value, type):
        value = value()
    if not hasattr(value, "history") or not hasattr(value, "save"):
        raise ConfigError(f"conversation_store: {target!r} has no history() and save()")
    return value


class Service:
    """The workers, the stand-in model when there is no API key, and the metrics endpoint."""

    def __init__(self, config: Config, connection: ConnectionSettings) -> None:
        self.config = config
        self.connection = connection
        self.metrics = ServiceMetrics()
        self.workers: list[Worker] = []
        self._closers: list[Any] = []

    async def start(self) -> None:
        config = self.config
        credentials = self.connection.channel_credentials()
        for queue in config.queues:
            worker = Worker(
                queue,
                address=self.connection.address,
                concurrency=config.concurrency,
                lease=config.lease,
                token=self.connection.token,
                credentials=credentials,
            )
            if queue == "ai-tasks":
                await self._ai(worker)
            else:
                from .mail import Mailer

                Mailer(config, self.metrics).register(worker)
            self.workers.append(worker)
        if config.metrics_port:
            server = self.metrics.serve(
                [w.stats for w in self.workers], config.metrics_port, config.metrics_host
            )
            self._closers.append(server.shutdown)

    async def _ai(self, worker: Worker) -> None:
        from .ai import AiTasks
        from .standin import StandIn

        config = self.config
        store = conversation_store(config.conversation_store) if config.conversation_store else None
        base_url = api_key = None
        if not config.openai_api_key:
            standin = StandIn(delay=STANDIN_DELAY_S)
            await standin.start()
            self._closers.append(standin.close)
            base_url, api_key = standin.base_url, "standin"
            log.warning(
                "no OPENAI_API_KEY: completions and embeddings come from the local STAND-IN "
                "model at %s (a Markov chain over a built-in text, not a real model; results "
                "say standIn: true). Set OPENAI_API_KEY (and OPENAI_BASE_URL for another "
                "OpenAI-compatible server) for real ones.",
                standin.base_url,
            )
        tasks = AiTasks(config, self.metrics, store, base_url=base_url, api_key=api_key)
        tasks.register(worker)
        self._closers.append(tasks.close)

    async def serve(self) -> None:
        await asyncio.gather(*(worker.serve() for worker in self.workers))

    async def stop(self, grace: float | None = None) -> None:
        await asyncio.gather(*(worker.stop(grace) for worker in self.workers))

    async def close(self) -> None:
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                result = close()
                if asyncio.iscoroutine(result):
                    await result


async def run(service: Service) -> None:
    loop = asyncio.get_running_loop()
    received = 0
    stopping: set[asyncio.Task[None]] = set()

    def on_signal(sig: signal.Signals) -> None:
        nonlocal received
        received += 1
        log.info("%s received: %s", sig.name, "stopping" if received == 1 else "stopping now")
        task = loop.create_task(service.stop(None if received == 1 else 0.0))
        stopping.add(task)
        task.add_done_callback(stopping.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
    try:
        await service.start()
        names = ", ".join(service.config.queues)
        log.info("jobbroker-worker serving %s at %s", names, service.connection.target)
        await service.serve()
    finally:
        await service.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = vars(parser().parse_args(argv))
    connection_flags = {k: args.pop(k) for k in ("address", "token", "tls", "tls_ca")}
    connection_flags |= {k: args.pop(k) for k in ("tls_cert", "tls_key")}
    try:
        config = load(args)
        configure_logging(config.log_format, config.log_level)
        connection = ConnectionSettings.from_env(**connection_flags)
        connection.channel_credentials()  # refuse unreadable TLS files now
    except (ConfigError, ValueError) as exc:
        print(f"jobbroker-worker: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    try:
        with serving_gc(), asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(run(Service(config, connection)))
    except ConfigError as exc:
        print(f"jobbroker-worker: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
