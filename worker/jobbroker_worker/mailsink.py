"""A local SMTP server that keeps what it receives (aiosmtpd): where ``./scripts/run``'s demo
sends its mail, so a user can read it, with nothing leaving the machine.

    python -m jobbroker_worker.mailsink --port 1025 --directory .jobbroker/mail

Each message is kept as ``<directory>/<n>-<recipient>.eml`` (open it with any mail program, or
read it as text) and announced with one line on stderr.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import itertools
import logging
import re
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

log = logging.getLogger("jobbroker_worker.mailsink")


@dataclass
class Received:
    """One accepted message."""

    sender: str
    recipients: list[str]
    message: EmailMessage
    path: Path | None


@dataclass
class Sink:
    """The aiosmtpd handler: accepts every message, keeps it in :attr:`received` and, with a
    directory, as an ``.eml`` file."""

    directory: Path | None = None
    received: list[Received] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        path = None
        with self._lock:
            number = next(self._numbers)
            if self.directory is not None:
                self.directory.mkdir(parents=True, exist_ok=True)
                safe = re.sub(r"[^A-Za-z0-9@._-]", "_", envelope.rcpt_tos[0])[:80]
                path = self.directory / f"{number:04d}-{safe}.eml"
                path.write_bytes(envelope.content)
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), parsed, path)
            )
        log.info(
            "mail sink: %r to %s%s",
            parsed.get("Subject", ""),
            ", ".join(envelope.rcpt_tos),
            f" (saved as {path})" if path else "",
        )
        return "250 Message accepted for delivery"


def start(sink: Sink, host: str = "127.0.0.1", port: int = 1025) -> Controller:
    """Serve ``sink`` on ``host:port`` from a thread; ``stop()`` the result to end it."""
    # aiosmtpd logs every connection at INFO ("mail.log"): too chatty beside the tour's output.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    controller = Controller(sink, hostname=host, port=port)
    controller.start()
    return controller


def main() -> None:
    parser = argparse.ArgumentParser(description="A local SMTP server that keeps what it gets.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--directory", default=".jobbroker/mail")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    controller = start(Sink(Path(args.directory)), args.host, args.port)
    print(f"mail sink on smtp://{args.host}:{args.port}, keeping mail in {args.directory}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
