"""``jobbroker dashboard``: attached to the ``jobbroker`` command through the ``jobbroker.cli``
entry point group, so the client package never imports the dashboard.

Importing this module needs only what ``jobbroker`` itself needs (typer); the dashboard's own
dependencies are imported when the command runs, and their absence is said plainly.
"""

from __future__ import annotations

from typing import Annotated

import typer

INSTALL_HINT = "jobbroker dashboard needs the dashboard extra: pip install 'jobbroker[dashboard]'"


def register(app: typer.Typer) -> None:
    """Add the ``dashboard`` command to the ``jobbroker`` app."""
    app.command(name="dashboard")(dashboard)


def dashboard(
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            "-a",
            help="The broker's host:port, or several comma-separated (env JOBBROKER_ADDRESS).",
            show_default=False,
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address the web server binds.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the web server.", min=0, max=65535)] = 8080,
    prefix: Annotated[
        str, typer.Option(help="Path of the pages (the HTTP API is at /api).")
    ] = "/admin/queues",
    title: Annotated[str, typer.Option(help="Shown in every page's header.")] = "jobbroker",
    secure_cookies: Annotated[
        bool,
        typer.Option(
            "--secure-cookies", help="Mark cookies Secure (behind a TLS proxy that hides https)."
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the web dashboard and the HTTP/JSON API: a gRPC client of the broker, with the
    token of whoever signs in (never this process's own --token or JOBBROKER_TOKEN)."""
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        typer.echo(f"error: {INSTALL_HINT} ({exc.name} is missing)", err=True)
        raise typer.Exit(2) from None
    from jobbroker.cli import connection_settings

    from .settings import DashboardSettings

    try:
        connection = connection_settings(address)
        credentials = connection.channel_credentials()
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if connection.token:
        typer.echo(
            "note: the dashboard does not use --token / JOBBROKER_TOKEN: each browser signs in "
            "with its own token, and each API caller sends one",
            err=True,
        )
    settings = DashboardSettings(
        address=None if connection.address is None else str(connection.address),
        credentials=credentials,
        title=title,
        secure_cookies=True if secure_cookies else None,
    )
    app = create_app(settings, prefix=prefix)
    typer.echo(f"jobbroker dashboard on http://{host}:{port}{'/' + prefix.strip('/')}/", err=True)
    # Open pages hold streams: they must not keep a stopping dashboard up.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=2,
    )
