"""``jobbroker``: run a broker, run workers, add, inspect, follow and cancel jobs, and operate
queues (``queues``, ``queue ...``, ``events``, ``workers``, ``schedules ...``: _queues.py).

Exit codes (every command):

- 0: done (``watch`` / ``add --watch``: the job completed)
- 1: the watched job failed, was cancelled or was removed
- 2: usage error: a bad option or argument (including one the broker rejects as invalid)
- 3: not found: no such job (or schedule)
- 4: the broker (or its Redis) is unreachable
- 5: the broker refused the call in the job's current state, or a limit or conflict
- 130: interrupted (Ctrl-C)

Read commands take ``--json``: one JSON document per line on stdout, for scripts.

Connection options (``--address``, ``--token``, ``--tls``, ``--tls-ca``, ``--tls-cert``,
``--tls-key``) go before the command or after it; what is not given comes from the
environment (``JOBBROKER_ADDRESS``, ``JOBBROKER_TOKEN``, ``JOBBROKER_TLS``, ...).
"""

from __future__ import annotations

import enum
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from ..connection import (
    TLS_CA_ENV,
    TLS_CERT_ENV,
    TLS_ENV,
    TLS_KEY_ENV,
    TOKEN_ENV,
    ConnectionSettings,
)
from ..models import Added, JobState
from . import _options as opts
from . import _queues, _schemas
from . import output as out
from .common import (
    ADDRESS_HELP,
    BROKER_INSTALL,
    Address,
    Attempts,
    AttemptTimeout,
    BackoffSpec,
    ConnectingGroup,
    Data,
    ExitCode,
    Json,
    Priority,
    Queue,
    RemoveOnComplete,
    RemoveOnFail,
    connected,
    connection,
    fail,
)

if TYPE_CHECKING:
    from ..client import Client


class StateName(enum.StrEnum):
    waiting = "waiting"
    delayed = "delayed"
    active = "active"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


app = typer.Typer(
    cls=ConnectingGroup,
    name="jobbroker",
    help="jobbroker: a gRPC job broker on Redis. Run a broker, run workers, manage jobs. "
    "The connection options below also work after the command.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JobId = Annotated[str, typer.Argument(metavar="JOB_ID", help="Job id.", show_default=False)]


@app.callback()
def main_options(
    address: Address = None,
    token: Annotated[
        str | None,
        typer.Option(
            help=f"API token sent with every call, from jobbroker token create (env {TOKEN_ENV}).",
            show_default=False,
        ),
    ] = None,
    tls: Annotated[
        bool,
        typer.Option("--tls", help=f"Connect with TLS, trusting the system's CAs (env {TLS_ENV})."),
    ] = False,
    tls_ca: Annotated[
        str | None,
        typer.Option(
            help=f"PEM CA of the broker's certificate; implies --tls (env {TLS_CA_ENV}).",
            show_default=False,
        ),
    ] = None,
    tls_cert: Annotated[
        str | None,
        typer.Option(
            help=f"PEM client certificate, for mutual TLS (env {TLS_CERT_ENV}).", show_default=False
        ),
    ] = None,
    tls_key: Annotated[
        str | None,
        typer.Option(help=f"PEM key of --tls-cert (env {TLS_KEY_ENV}).", show_default=False),
    ] = None,
) -> None:
    """How every command connects: these options go before the command or after it; what is
    not given comes from the environment."""
    connection.address = address
    connection.token = token
    connection.tls = tls
    connection.tls_ca, connection.tls_cert, connection.tls_key = tls_ca, tls_cert, tls_key


@app.command()
def work(
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE[:WORKER]",
            help="The module (imported from the current directory) and its Worker attribute, "
            "or a function returning a Worker; default attribute 'worker'.",
            show_default=False,
        ),
    ],
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            "-a",
            help=f"{ADDRESS_HELP.removesuffix('.')}; overrides the Worker's own address.",
            show_default=False,
        ),
    ] = None,
    log_format: Annotated[
        str,
        typer.Option(envvar="JOBBROKER_LOG_FORMAT", help="console or json (one object a line)."),
    ] = "console",
    log_level: Annotated[
        str,
        typer.Option(envvar="JOBBROKER_LOG_LEVEL", help="debug, info, warning or error."),
    ] = "info",
    metrics_port: Annotated[
        int,
        typer.Option(
            envvar="JOBBROKER_WORKER_METRICS_PORT",
            help="Serve the worker's Prometheus metrics on this port (/metrics); 0: off.",
            min=0,
            max=65535,
        ),
    ] = 0,
    metrics_host: Annotated[
        str,
        typer.Option(
            envvar="JOBBROKER_WORKER_METRICS_HOST", help="Address the metrics endpoint binds."
        ),
    ] = "127.0.0.1",
) -> None:
    """Run a worker process (like celery -A / arq): Ctrl-C or SIGTERM stops it gracefully."""
    from ._work import RunnerError, run_worker

    # What the command line or the environment says replaces what the module's Worker says.
    settings = connection.settings(address)
    try:
        run_worker(
            target,
            address=None if settings.address is None else str(settings.address),
            token=settings.token,
            credentials=connection.credentials(settings),
            log_format=log_format,
            log_level=log_level,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
        )
    except RunnerError as exc:
        fail(ExitCode.USAGE, str(exc))


@app.command()
def add(
    queue: Queue,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Job name (workers pick handlers by it).")
    ],
    data: Data = None,
    job_id: Annotated[
        str | None,
        typer.Option(
            "--job-id", help="Custom job id: adding it again is idempotent.", show_default=False
        ),
    ] = None,
    priority: Priority = 0,
    delay: Annotated[
        str | None, typer.Option(help="Run after this long: 30s, 5m, 1h ...", show_default=False)
    ] = None,
    attempts: Attempts = 1,
    backoff: BackoffSpec = None,
    backoff_jitter: Annotated[
        float,
        typer.Option(help="0-1: draw each retry delay between d*(1-j) and d.", min=0, max=1),
    ] = 0.0,
    backoff_max: Annotated[
        str | None, typer.Option(help="Longest retry delay.", show_default=False)
    ] = None,
    timeout: AttemptTimeout = None,
    lifespan: Annotated[
        str | None,
        typer.Option(help="Fail the job if not started within this.", show_default=False),
    ] = None,
    remove_on_complete: RemoveOnComplete = "false",
    remove_on_fail: RemoveOnFail = "false",
    lifo: Annotated[bool, typer.Option("--lifo", help="Serve before older jobs.")] = False,
    group: Annotated[
        str | None,
        typer.Option(help="Group key (a tenant, a user) for the queue's group rate limit."),
    ] = None,
    watch_: Annotated[
        bool, typer.Option("--watch", "-w", help="Then follow the job until it ends (like watch).")
    ] = False,
    address: Address = None,
    as_json: Json = False,
) -> None:
    """Add a job. Prints its id (with --watch, follows it; exit 1 if it fails)."""
    try:
        value = opts.json_data(data)
        options = opts.job_options(
            job_id=job_id,
            priority=priority,
            delay=opts.maybe_duration(delay, "--delay"),
            attempts=attempts,
            lifespan=opts.maybe_duration(lifespan, "--lifespan"),
            lifo=lifo,
            group=group,
            **opts.attempt_fields(
                backoff_spec=backoff,
                backoff_jitter=backoff_jitter,
                backoff_max=backoff_max,
                timeout=timeout,
                remove_on_complete=remove_on_complete,
                remove_on_fail=remove_on_fail,
            ),
        )
    except opts.OptionError as exc:
        fail(ExitCode.USAGE, str(exc))
    with connected(address) as client:
        added = client.add(queue, name, value, options=options)
        _print_added(queue, added, as_json)
        if watch_:
            _watch(client, queue, added.job_id, as_json)


def _print_added(queue: str, added: Added, as_json: bool) -> None:
    if as_json:
        out.print_json(added)
        return
    note = " (already there: same id, name and data)" if added.duplicate else ""
    out.stdout().print(
        f"added {escape(queue)}/{escape(added.job_id)} {out.state_text(added.state)}{note}"
    )


@app.command()
def status(queue: Queue, job_id: JobId, address: Address = None, as_json: Json = False) -> None:
    """Show a job: state, attempts, progress, data, result or failure."""
    with connected(address) as client:
        job = client.get_status(queue, job_id)
    if as_json:
        out.print_json(job)
    else:
        out.print_job(job)


@app.command()
def watch(queue: Queue, job_id: JobId, address: Address = None, as_json: Json = False) -> None:
    """Follow a job's progress live until it ends: exit 0 completed, 1 failed or cancelled."""
    with connected(address) as client:
        _watch(client, queue, job_id, as_json)


def _watch(client: Client, queue: str, job_id: str, as_json: bool) -> None:
    from ._follow import watch as follow

    outcome = follow(client, queue, job_id, as_json=as_json)
    if not as_json:
        console = out.stdout()
        if outcome.state is JobState.COMPLETED:
            console.print(
                f"{out.state_text(outcome.state)} result: {escape(out.short(outcome.result, 500))}"
            )
        elif outcome.state is None:
            console.print("[magenta]removed[/]")
        else:
            detail = f": {out.failure_text(outcome.failure)}" if outcome.failure else ""
            console.print(f"{out.state_text(outcome.state)}{escape(detail)}")
    if not outcome.ok:
        raise typer.Exit(int(ExitCode.JOB_FAILED))


@app.command()
def cancel(
    queue: Queue,
    job_id: JobId,
    reason: Annotated[str, typer.Option(help="Why; kept on the job.")] = "",
    address: Address = None,
    as_json: Json = False,
) -> None:
    """Cancel a job: waiting/delayed at once; active: its worker is told to stop."""
    with connected(address) as client:
        state = client.cancel(queue, job_id, reason)
    _print_state(queue, job_id, state, as_json)
    if state is JobState.ACTIVE and not as_json:
        out.stdout().print("cancel requested: its worker is told to stop; it ends cancelled")


@app.command()
def retry(queue: Queue, job_id: JobId, address: Address = None, as_json: Json = False) -> None:
    """Run a failed or cancelled job again, with fresh attempts."""
    with connected(address) as client:
        state = client.retry(queue, job_id)
    _print_state(queue, job_id, state, as_json)


@app.command()
def promote(queue: Queue, job_id: JobId, address: Address = None, as_json: Json = False) -> None:
    """Make a delayed job waiting now."""
    with connected(address) as client:
        state = client.promote(queue, job_id)
    _print_state(queue, job_id, state, as_json)


@app.command()
def remove(queue: Queue, job_id: JobId, address: Address = None, as_json: Json = False) -> None:
    """Delete a job that is not active."""
    with connected(address) as client:
        state = client.remove(queue, job_id)
    _print_state(queue, job_id, state, as_json)


def _print_state(queue: str, job_id: str, state: JobState, as_json: bool) -> None:
    if as_json:
        out.print_json({"queue": queue, "job_id": job_id, "state": state})
    else:
        out.stdout().print(f"{escape(queue)}/{escape(job_id)} {out.state_text(state)}")


@app.command()
def jobs(
    queue: Queue,
    state: Annotated[
        StateName, typer.Option("--state", "-s", help="Which jobs to list.")
    ] = StateName.waiting,
    limit: Annotated[int, typer.Option(help="Jobs per page.", min=1, max=1000)] = 50,
    page_token: Annotated[
        str, typer.Option(help="Continue from a previous page's next_page_token.")
    ] = "",
    descending: Annotated[bool, typer.Option("--desc", help="Newest first.")] = False,
    address: Address = None,
    as_json: Json = False,
) -> None:
    """List a queue's jobs in one state, a page at a time."""
    with connected(address) as client:
        page = client.list(
            queue,
            JobState(state.value),
            page_size=limit,
            page_token=page_token,
            descending=descending,
        )
    if as_json:
        out.print_json(
            {"jobs": page.jobs, "next_page_token": page.next_page_token, "total": page.total}
        )
        return
    console = out.stdout()
    console.print(out.jobs_table(list(page.jobs), f"{queue}: {page.total} {state.value}"))
    if page.next_page_token:
        console.print(f"more: --page-token {escape(page.next_page_token)}")


@app.command()
def logs(
    queue: Queue,
    job_id: JobId,
    offset: Annotated[int, typer.Option(help="First line (0 = oldest kept).", min=0)] = 0,
    limit: Annotated[int, typer.Option(help="Lines to show.", min=1)] = 100,
    address: Address = None,
    as_json: Json = False,
) -> None:
    """Print the log lines a job's worker wrote."""
    with connected(address) as client:
        result = client.logs(queue, job_id, offset=offset, limit=limit)
    if as_json:
        out.print_json({"lines": list(result.lines), "total": result.total})
        return
    for line in result.lines:
        print(line)
    shown = offset + len(result.lines)
    if shown < result.total:
        out.stderr().print(f"[dim]{shown} of {result.total} lines; more with --offset {shown}[/]")


_queues.register(app)
_schemas.register(app)


def connection_settings(address: str | None = None) -> ConnectionSettings:
    """The connection the command line asks for (``address``: the command's own
    ``--address``; then the options before or after the command; then the environment), for
    the commands other packages attach."""
    return connection.settings(address)


BROKER_COMMANDS = ("serve", "token")
"""The commands the broker's ``jobbroker.cli`` entry point (named ``broker``) attaches."""


def attach_commands(group: str = "jobbroker.cli") -> None:
    """Add the commands other packages declare: each entry point of ``group`` names a function
    that takes this app (``jobbroker_broker.cli:register`` adds ``serve`` and ``token``,
    ``jobbroker_dashboard.cli:register`` adds ``dashboard``). The
    client package imports none of them itself; one that fails to load becomes a command
    saying why, so the others still work. While the broker is not installed, its commands
    say what to install."""
    found = set()
    for point in entry_points(group=group):
        found.add(point.name)
        try:
            point.load()(app)
        except Exception as exc:
            _unloadable(point.name, f"{type(exc).__name__}: {exc}")
    if "broker" not in found:
        for name in BROKER_COMMANDS:
            _not_installed(name, f"jobbroker {name} needs the broker: {BROKER_INSTALL}")


def _unloadable(name: str, problem: str) -> None:
    _not_installed(name, f"jobbroker {name} could not be loaded: {problem}")


def _not_installed(name: str, problem: str) -> None:
    """Command ``name``, standing in for one that is missing: whatever its arguments, it
    exits 2 with ``problem``."""

    @app.command(
        name=name,
        context_settings={
            "allow_extra_args": True,
            "ignore_unknown_options": True,
            "help_option_names": [],
        },
        add_help_option=False,
        help=f"({problem})",
    )
    def not_installed() -> None:
        fail(ExitCode.USAGE, problem)


attach_commands()


def main() -> None:
    """The console script's entry point."""
    # typer's exit codes for usage errors are 2 already; the others are ours (see above).
    app(prog_name="jobbroker")
