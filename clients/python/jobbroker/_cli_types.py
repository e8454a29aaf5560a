"""Argument and option types every CLI command shares."""

from __future__ import annotations

from typing import Annotated

import typer

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
