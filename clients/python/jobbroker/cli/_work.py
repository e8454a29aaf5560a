"""``jobbroker work MODULE[:WORKER]``: import a module from the current directory, find its
:class:`jobbroker.Worker`, and run it until SIGTERM or Ctrl-C (like ``celery -A`` or ``arq``).

``WORKER`` names an attribute of the module (dotted paths work: ``app:tasks.worker``) holding a
Worker, or a function that takes no arguments and returns one. Without it, the attribute
``worker`` is used, else the module's only Worker.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import grpc

from ..connection import ADDRESS_ENV
from ..logs import configure as configure_logging
from ..worker import Worker, serve_metrics

DEFAULT_ATTRIBUTE = "worker"


class RunnerError(Exception):
    """MODULE:WORKER names nothing runnable; the message says what was found instead."""


def _import(module_name: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "MODULE itself is missing" is a usage error; a module that fails to import
        # one of its own dependencies shows its real traceback.
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise RunnerError(
                f"cannot import {module_name!r} from {cwd} (is it a file {module_name}.py, "
                "or a package, in the current directory or on PYTHONPATH?)"
            ) from None
        raise


def _resolve(module: Any, module_name: str, attribute: str) -> Any:
    value = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            workers = sorted(k for k, v in vars(module).items() if isinstance(v, Worker))
            found = f"; its Workers: {', '.join(workers)}" if workers else ""
            raise RunnerError(f"{module_name!r} has no attribute {attribute!r}{found}")
        value = getattr(value, part)
    return value


def load_worker(target: str) -> Worker:
    """The Worker ``target`` (``MODULE[:WORKER]``) names."""
    module_name, _, attribute = target.partition(":")
    if not module_name or (not attribute and ":" in target):
        raise RunnerError(f"{target!r} is not MODULE or MODULE:WORKER")
    module = _import(module_name)
    if attribute:
        value = _resolve(module, module_name, attribute)
    elif isinstance(getattr(module, DEFAULT_ATTRIBUTE, None), Worker):
        value = getattr(module, DEFAULT_ATTRIBUTE)
    else:
        workers = [v for v in vars(module).values() if isinstance(v, Worker)]
        if len(workers) != 1:
            what = "no Worker" if not workers else f"{len(workers)} Workers"
            raise RunnerError(f"{module_name!r} has {what}: name one as {module_name}:ATTRIBUTE")
        value = workers[0]
        attribute = DEFAULT_ATTRIBUTE
    if not isinstance(value, Worker) and callable(value):
        value = value()
    if not isinstance(value, Worker):
        raise RunnerError(
            f"{target!r} is a {type(value).__name__}, not a jobbroker.Worker "
            "(or a function returning one)"
        )
    return value


def run_worker(
    target: str,
    *,
    address: str | None = None,
    token: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    log_format: str = "console",
    log_level: str = "info",
    metrics_port: int = 0,
    metrics_host: str = "127.0.0.1",
) -> None:
    """Load the Worker and run it until SIGTERM or SIGINT (a second signal stops at once).

    ``address``, when given, is the broker the Worker connects to, whatever the module set;
    it is also exported as ``JOBBROKER_ADDRESS`` before the module is imported, for modules
    that read it (to build a Client, say). ``token`` and ``credentials`` (the CLI's ``--token``
    and TLS options), when given, replace the Worker's own. ``log_format`` (console or json)
    and ``log_level`` set the process' log output. ``metrics_port`` (0: none) serves the
    worker's Prometheus metrics on ``metrics_host``.
    """
    try:
        configure_logging(log_format, log_level)
    except ValueError as exc:
        raise RunnerError(str(exc)) from None
    if address:
        os.environ[ADDRESS_ENV] = address
    worker = load_worker(target)
    worker.connect_with(address=address, token=token, credentials=credentials)
    server = None
    if metrics_port:
        try:
            server = serve_metrics(worker.stats, metrics_port, metrics_host)
        except OSError as exc:
            raise RunnerError(
                f"--metrics-port {metrics_port}: cannot listen on {metrics_host}: {exc.strerror}"
            ) from None
    try:
        worker.run()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
