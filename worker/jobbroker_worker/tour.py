"""What ``jobbroker serve --demo`` (and so ``./scripts/run``) runs beside the broker: the demo
worker (queue ``demo``) and, when the ``demo`` extra is installed, the guide's processors
(``ai-tasks`` and ``email``, as ``jobbroker-worker`` runs them) with a local SMTP sink for
their mail. Without ``OPENAI_API_KEY`` completions come from the local stand-in model.

    python -m jobbroker_worker.tour --address HOST:PORT

Mail goes to the sink on 127.0.0.1:1025 (``JOBBROKER_DEMO_SMTP_PORT``; another free port when
that one is taken) and is kept in ``.jobbroker/mail`` (``JOBBROKER_DEMO_MAIL_DIR``), one
``.eml`` file per message. SIGTERM or Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

from jobbroker import ConnectionSettings
from jobbroker.logs import configure as configure_logging

log = logging.getLogger("jobbroker_worker.tour")

SMTP_PORT_ENV = "JOBBROKER_DEMO_SMTP_PORT"
MAIL_DIR_ENV = "JOBBROKER_DEMO_MAIL_DIR"


def _port(wanted: int) -> int:
    """``wanted`` when it is free on 127.0.0.1, else a free one."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", wanted))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _guide(address: str) -> tuple[Any, Any] | None:
    """The guide's service and its mail sink, or None without the ``demo`` extra."""
    try:
        from .config import load
        from .mailsink import Sink, start
        from .service import Service
    except ImportError as exc:
        log.warning(
            "the guide's ai-tasks and email workers need the demo extra "
            "(pip install 'jobbroker[demo]'): %s; serving the queue 'demo' only",
            exc,
        )
        return None
    directory = Path(os.environ.get(MAIL_DIR_ENV, ".jobbroker/mail")).absolute()
    port = _port(int(os.environ.get(SMTP_PORT_ENV, "1025")))
    sink = start(Sink(directory), "127.0.0.1", port)
    config = load({"smtp_url": f"smtp://127.0.0.1:{port}?starttls=off"})
    service = Service(config, ConnectionSettings.from_env(address=address))
    print(
        f"The guide's workers serve 'ai-tasks' (generate-completion, generate-embeddings) and "
        f"'email' (send-welcome, send-verification, send-reset-password, send-notification).\n"
        f"Their mail goes to a local SMTP sink on 127.0.0.1:{port}, kept in {directory}.\n"
        f"Try: jobbroker add ai-tasks generate-completion --data "
        '\'{"userId": "u1", "conversationId": "c1", "message": "Hello"}\' --watch',
        flush=True,
    )
    return service, sink


async def _run(address: str) -> None:
    os.environ["JOBBROKER_ADDRESS"] = address
    from .demo import worker as demo_worker

    guide = _guide(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    demo_worker.connect_with(address=address)
    await demo_worker.start()
    service = guide[0] if guide else None
    serving: asyncio.Future[None] | None = None
    try:
        if service is not None:
            await service.start()
            serving = asyncio.ensure_future(service.serve())
        await stop.wait()
    finally:
        if service is not None:
            await service.stop()
            if serving is not None:
                with contextlib.suppress(Exception):
                    await serving
            await service.close()
        await demo_worker.stop()
        if guide is not None:
            guide[1].stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", "-a", default=os.environ.get("JOBBROKER_ADDRESS", ""))
    args = parser.parse_args()
    configure_logging(
        os.environ.get("JOBBROKER_LOG_FORMAT", "console"),
        os.environ.get("JOBBROKER_LOG_LEVEL", "info"),
    )
    address = args.address or "127.0.0.1:50051"
    asyncio.run(_run(address))


if __name__ == "__main__":
    main()
