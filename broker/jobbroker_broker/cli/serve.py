"""``jobbroker serve``: the broker in this process, its embedded Redis, and the demo worker.

Attached to ``jobbroker`` by :mod:`jobbroker_broker.cli`; the broker's modules are imported
lazily, when the command runs, so ``jobbroker --help`` stays quick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from jobbroker.connection import DEFAULT_ADDRESS

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger("jobbroker.serve")


DEMO_STOP_TIMEOUT = 15.0
"""Seconds the demo worker gets to finish or hand back its jobs on shutdown."""
EXAMPLE = """jobbroker add demo sleep --data '{"seconds": 3}' --watch"""


class ServeError(Exception):
    """The broker cannot start with this configuration; the message says why."""


def parse(argv: list[str]) -> tuple[Settings, bool]:
    """Settings from flags, ``JOBBROKER_*`` environment variables and the ``--config`` file;
    and whether to run the demo worker. ``--help`` prints every setting and exits."""
    import argparse

    from .. import config

    def add_demo(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--demo", action="store_true", default=False, help="Also run the demo worker."
        )

    try:
        settings, args = config.load(argv, prog="jobbroker serve", add_extra=add_demo)
    except config.ConfigError as exc:
        raise ServeError(str(exc)) from None
    except SystemExit as exc:  # argparse printed the help, or why the command line is wrong
        if exc.code == 0:
            raise
        raise ServeError("") from exc
    return settings, bool(args.demo)


def client_address(host: str, port: int) -> str:
    """The address a local client dials for a server bound to ``host``."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def run(settings: Settings, *, demo: bool) -> None:
    """Serve until SIGTERM or SIGINT (Ctrl-C); raises :class:`ServeError` on a bad config."""
    from jobbroker.logs import configure

    from ..config import ConfigError
    from ..storage.embedded import EmbeddedRedisError

    try:
        configure(settings.log_format, settings.log_level)
    except ValueError as exc:
        raise ServeError(str(exc)) from None
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from ..__main__ import bind_error

    try:
        asyncio.run(_serve(settings, demo=demo))
    except (ConfigError, EmbeddedRedisError) as exc:
        raise ServeError(str(exc)) from None
    except RuntimeError as exc:
        message = bind_error(settings, exc)
        if not message:
            raise
        raise ServeError(message) from None


async def _serve(settings: Settings, *, demo: bool) -> None:
    from ..__main__ import (
        describe_redis,
        reload_tokens_on_sighup,
        running_broker,
        stop_on_signals,
    )

    stop = asyncio.Event()
    stop_on_signals(stop)
    async with running_broker(settings) as running:
        reload_tokens_on_sighup(running.broker)
        address = client_address(settings.host, running.broker.port)
        print(describe_redis(running), flush=True)
        print(f"jobbroker listening on {running.address}", flush=True)
        worker = _start_demo_worker(address, settings) if demo else None
        try:
            _print_welcome(address, demo=demo)
            await _wait(stop, worker)
        finally:
            if worker is not None:
                await _stop_demo_worker(worker)


def _print_welcome(address: str, *, demo: bool) -> None:
    flag = "" if address == DEFAULT_ADDRESS else f" --address {address}"
    lines = [""]
    if demo:
        lines.append(
            "A demo worker serves the queue 'demo' (jobs: sleep, fail, flaky, echo, tokens)."
        )
    lines.append("Try, in another terminal:")
    lines.append(
        f"  {EXAMPLE}{flag}" if demo else f"  jobbroker add my-queue my-job --data '{{}}'{flag}"
    )
    lines.append("Stop with Ctrl-C.")
    lines.append("")
    print("\n".join(lines), flush=True)


def _start_demo_worker(address: str, settings: Settings) -> subprocess.Popen[bytes]:
    from ..storage.embedded import die_with_parent

    # A process of its own: its handlers never compete with the broker's event loop, and
    # stopping it is one signal. Its own session, so Ctrl-C reaches only us, and we stop it
    # first, before the broker it reports to.
    return subprocess.Popen(
        die_with_parent(
            # The demo worker and, with the demo extra, the guide's (jobbroker_worker/tour.py).
            [sys.executable, "-m", "jobbroker_worker.tour", "--address", address]
        ),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={
            **os.environ,
            "JOBBROKER_ADDRESS": address,
            "JOBBROKER_LOG_FORMAT": settings.log_format,
            "JOBBROKER_LOG_LEVEL": settings.log_level,
        },
    )


async def _wait(stop: asyncio.Event, worker: subprocess.Popen[bytes] | None) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        if worker is not None and worker.poll() is not None:
            log.error(
                "the demo worker exited (code %s); the broker keeps serving", worker.returncode
            )
            worker = None


async def _stop_demo_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(worker.wait, DEMO_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        log.warning("the demo worker did not stop in %.0f s; killing it", DEMO_STOP_TIMEOUT)
        worker.kill()
        await asyncio.to_thread(worker.wait)
