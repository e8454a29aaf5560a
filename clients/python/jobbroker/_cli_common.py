"""What every CLI command shares: argument and option types, exit codes, and a client whose
broker errors become those exit codes."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, NoReturn

import grpc
import typer
from rich.markup import escape

from . import _cli_output as out
from .errors import (
    DeadlineExceeded,
    InvalidArgument,
    JobBrokerError,
    JobNotFound,
    ScheduleNotFound,
    Unavailable,
)

if TYPE_CHECKING:
    from .client import Client

DEFAULT_ADDRESS = "127.0.0.1:50051"

Address = Annotated[
    str,
    typer.Option(
        "--address",
        "-a",
        envvar="JOBBROKER_ADDRESS",
        help="The broker's host:port.",
        show_default=True,
    ),
]
Json = Annotated[
    bool, typer.Option("--json", help="Print JSON (one document per line) for scripts.")
]
Queue = Annotated[str, typer.Argument(metavar="QUEUE", help="Queue name.", show_default=False)]


@dataclass
class Connection:
    """How commands reach the broker, from the global options (``jobbroker --token ...``)."""

    token: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls: bool = False

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not (self.tls or self.tls_ca or self.tls_cert):
            return None
        from ._channel import tls_credentials

        try:
            return tls_credentials(self.tls_ca, self.tls_cert, self.tls_key)
        except (OSError, ValueError) as exc:
            fail(ExitCode.USAGE, f"--tls-ca/--tls-cert/--tls-key: {exc}")


connection = Connection()


class ExitCode(enum.IntEnum):
    OK = 0
    JOB_FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    UNREACHABLE = 4
    REFUSED = 5
    INTERRUPTED = 130


def fail(code: ExitCode, message: str) -> NoReturn:
    out.stderr().print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(int(code))


@contextmanager
def connected(address: str) -> Iterator[Client]:
    """A client of the broker; broker errors become the documented exit codes."""
    from .client import Client

    try:
        client = Client(address, credentials=connection.credentials(), token=connection.token)
    except ValueError as exc:
        fail(ExitCode.USAGE, f"--address {address!r}: {exc}")
    try:
        yield client
    except (JobNotFound, ScheduleNotFound) as exc:
        fail(ExitCode.NOT_FOUND, exc.message)
    except InvalidArgument as exc:
        field = f" ({exc.field})" if exc.field else ""
        fail(ExitCode.USAGE, f"{exc.message}{field}")
    except (Unavailable, DeadlineExceeded) as exc:
        fail(ExitCode.UNREACHABLE, f"broker at {address} unreachable: {exc.message}")
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except JobBrokerError as exc:
        reason = f" [{exc.reason}]" if exc.reason else ""
        fail(ExitCode.REFUSED, f"{exc.message}{reason}")
    finally:
        client.close()
