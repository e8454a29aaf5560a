"""What every CLI command shares: argument and option types, exit codes, and a client whose
broker errors become those exit codes."""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import grpc
import typer
from rich.markup import escape
from typer.core import TyperGroup

from ..connection import ADDRESS_ENV, DEFAULT_ADDRESS, ConnectionSettings
from ..errors import (
    DeadlineExceeded,
    InvalidArgument,
    JobBrokerError,
    JobNotFound,
    ScheduleNotFound,
    Unavailable,
)
from ..limits import MAX_ATTEMPTS, MAX_PRIORITY
from . import output as out

if TYPE_CHECKING:
    from ..client import Client

ADDRESS_HELP = f"The broker's host:port (env {ADDRESS_ENV}; default {DEFAULT_ADDRESS})."
Address = Annotated[
    str | None,
    typer.Option("--address", "-a", help=ADDRESS_HELP, show_default=False),
]
Priority = Annotated[
    int,
    typer.Option(
        help="1 (highest) to 1,000,000; 0 = unprioritized, served first.",
        min=0,
        max=MAX_PRIORITY,
    ),
]
Attempts = Annotated[
    int, typer.Option(help="Total attempts, the first included.", min=1, max=MAX_ATTEMPTS)
]
Json = Annotated[
    bool, typer.Option("--json", help="Print JSON (one document per line) for scripts.")
]
Data = Annotated[
    str | None,
    typer.Option(help="Job data: JSON, @file.json, or - for standard input.", show_default=False),
]
BackoffSpec = Annotated[
    str | None,
    typer.Option(help="Wait before each retry: fixed:5s or exponential:5s.", show_default=False),
]
AttemptTimeout = Annotated[
    str | None, typer.Option(help="Longest run of one attempt.", show_default=False)
]
RemoveOnComplete = Annotated[
    str, typer.Option(help="true, false, N (keep last N), an age (1h), or N,AGE.")
]
RemoveOnFail = Annotated[str, typer.Option(help="The same, for failed and cancelled jobs.")]
Queue = Annotated[str, typer.Argument(metavar="QUEUE", help="Queue name.", show_default=False)]


@dataclass
class Connection:
    """The connection options given on the command line (``jobbroker --token ...``); what is
    not given comes from the environment (:class:`ConnectionSettings`)."""

    address: str | None = None
    token: str | None = None
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def settings(self, address: str | None = None) -> ConnectionSettings:
        """The settings to connect with; ``address``: a command's own ``--address``."""
        try:
            return ConnectionSettings.from_env(
                address=address or self.address,
                token=self.token,
                tls=self.tls or None,
                tls_ca=self.tls_ca,
                tls_cert=self.tls_cert,
                tls_key=self.tls_key,
            )
        except ValueError as exc:
            fail(ExitCode.USAGE, str(exc))

    def credentials(self, settings: ConnectionSettings) -> grpc.ChannelCredentials | None:
        try:
            return settings.channel_credentials()
        except ValueError as exc:
            fail(ExitCode.USAGE, f"--tls-ca/--tls-cert/--tls-key: {exc}")


connection = Connection()

CONNECTION_OPTIONS = {
    "--token": True,
    "--tls": False,
    "--tls-ca": True,
    "--tls-cert": True,
    "--tls-key": True,
}
"""The connection options a command takes after its name as well as before it (``--address``
is each command's own option too); True: the option takes a value."""
_GLOBAL_WITH_VALUE = frozenset(
    {"--address", "-a", *(name for name, value in CONNECTION_OPTIONS.items() if value)}
)
_OWN_OPTIONS = frozenset({"serve", "token"})
"""Commands with options of their own of those names (or that never connect): left alone."""


def hoist_connection_options(args: Sequence[str]) -> list[str]:
    """``args`` with the connection options found after the command moved before it, where
    the app reads them: ``jobbroker status q 1 --token T`` = ``jobbroker --token T status q 1``.
    """
    args = list(args)
    at = 0
    while at < len(args) and args[at].startswith("-") and args[at] != "--":
        at += 2 if args[at] in _GLOBAL_WITH_VALUE else 1
    if at >= len(args) or args[at] in _OWN_OPTIONS:
        return args
    moved: list[str] = []
    rest: list[str] = []
    i = at
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name = arg.split("=", 1)[0]
        if name in CONNECTION_OPTIONS:
            takes_value = CONNECTION_OPTIONS[name] and "=" not in arg
            moved.extend(args[i : i + 2] if takes_value else [arg])
            i += 2 if takes_value else 1
            continue
        rest.append(arg)
        i += 1
    return [*args[:at], *moved, *rest]


class ConnectingGroup(TyperGroup):
    """The ``jobbroker`` app: connection options work before and after the command."""

    def main(self, args: Sequence[str] | None = None, *rest: Any, **options: Any) -> Any:
        given = sys.argv[1:] if args is None else args
        return super().main(hoist_connection_options(given), *rest, **options)


BROKER_INSTALL = "pip install 'jobbroker[broker]'"
"""What adds the broker's commands (``serve``, ``token``): the ``jobbroker-broker``
distribution, through the extra."""


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
def connected(address: str | None) -> Iterator[Client]:
    """A client of the broker (``address``: the command's ``--address``, else the global one,
    else the environment's); broker errors become the documented exit codes."""
    from ..client import Client

    settings = connection.settings(address)
    credentials = connection.credentials(settings)
    address = str(settings.address or DEFAULT_ADDRESS)
    try:
        # Every setting is resolved here: an empty token keeps the client from reading the
        # environment again.
        client = Client(address, credentials=credentials, token=settings.token or "")
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
