"""The operators' commands: ``jobbroker queues``, ``queue ...``, ``events``, ``workers`` and
``schedules ...`` (QueueService). Registered on the main app by ``cli.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from ..models import JobState
from ..queue_models import QueueInfo, QueueSettings, RateLimit, Schedule
from . import _options as opts
from . import output as out
from .common import (
    Address,
    Attempts,
    AttemptTimeout,
    BackoffSpec,
    Data,
    ExitCode,
    Json,
    Priority,
    Queue,
    RemoveOnComplete,
    RemoveOnFail,
    connected,
    fail,
)

if TYPE_CHECKING:
    from ..client import Client

Key = Annotated[str, typer.Argument(metavar="KEY", help="Schedule key.", show_default=False)]

queue_app = typer.Typer(
    help="Operate on a queue: info, pause, resume, drain, clean, obliterate, settings ...",
    no_args_is_help=True,
)
schedules_app = typer.Typer(
    help="Repeatable jobs: list, add (or replace), get, remove.", no_args_is_help=True
)


def usage(message: str) -> NoReturn:
    fail(ExitCode.USAGE, message)


def register(app: typer.Typer) -> None:
    """Add the operators' commands to the ``jobbroker`` app."""
    app.command("queues")(queues)
    app.add_typer(queue_app, name="queue")
    app.command("events")(events)
    app.command("workers")(workers)
    app.add_typer(schedules_app, name="schedules")


def rate_limit(value: str | None, option: str) -> RateLimit | None:
    """``10/1s``, ``100/m``, ``5/500ms`` as a :class:`RateLimit`; ``0``, ``off`` or ``none``:
    no limit (None)."""
    if value is None:
        return None
    text = value.strip().lower()
    if text in ("0", "off", "none"):
        return None
    count, sep, window = text.partition("/")
    if not sep or not count.strip().isdigit() or int(count) < 1:
        raise opts.OptionError(f"{option}: {value!r} is not MAX/WINDOW (10/1s, 100/m) or off")
    window = window.strip()
    if window and not window[0].isdigit() and window[0] != ".":
        window = "1" + window  # "10/s": one second
    return RateLimit(int(count), opts.duration(window, option))


def _limit_text(limit: RateLimit | None) -> str:
    return str(limit) if limit is not None else "-"


def _settings_rows(settings: QueueSettings) -> list[tuple[str, str]]:
    return [
        ("rate limit", _limit_text(settings.rate_limit)),
        ("concurrency", str(settings.concurrency or "-")),
        ("group rate limit", _limit_text(settings.group_rate_limit)),
        ("max stalled", str(settings.max_stalled or "default")),
    ]


def _grid(rows: list[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table


def queues(address: Address = None, as_json: Json = False) -> None:
    """List every queue with its job counts."""
    with connected(address) as client:
        found = client.queues()
    if as_json:
        out.print_json({"queues": found})
        return
    table = Table(title=f"{len(found)} queues", title_justify="left")
    for column in ("queue", "paused", *(s.value for s in JobState)):
        name = column == "queue"
        table.add_column(column, justify="left" if name else "right", no_wrap=name)
    for info in found:
        counts = [str(getattr(info.counts, s.value)) for s in JobState]
        table.add_row(escape(info.name), "yes" if info.paused else "", *counts)
    out.stdout().print(table)


def _print_info(info: QueueInfo) -> None:
    counts = ", ".join(f"{getattr(info.counts, s.value)} {s.value}" for s in JobState)
    rows = [
        ("queue", escape(info.name)),
        ("paused", "[yellow]yes[/]" if info.paused else "no"),
        ("jobs", counts),
        *_settings_rows(info.settings),
    ]
    out.stdout().print(_grid(rows))


@queue_app.command("info")
def info(queue: Queue, address: Address = None, as_json: Json = False) -> None:
    """Show a queue: job counts, pause flag and settings."""
    with connected(address) as client:
        found = client.queue(queue)
    if as_json:
        out.print_json(found)
    else:
        _print_info(found)


def _done(as_json: bool, document: dict[str, object], text: str) -> None:
    if as_json:
        out.print_json(document)
    else:
        out.stdout().print(text)


@queue_app.command("pause")
def pause(queue: Queue, address: Address = None, as_json: Json = False) -> None:
    """Pause a queue: no worker gets a job from it until it is resumed."""
    with connected(address) as client:
        client.pause(queue)
    _done(as_json, {"queue": queue, "paused": True}, f"{escape(queue)} [yellow]paused[/]")


@queue_app.command("resume")
def resume(queue: Queue, address: Address = None, as_json: Json = False) -> None:
    """Resume a paused queue."""
    with connected(address) as client:
        client.resume(queue)
    _done(as_json, {"queue": queue, "paused": False}, f"{escape(queue)} resumed")


@queue_app.command("drain")
def drain(
    queue: Queue,
    delayed: Annotated[
        bool, typer.Option("--delayed", help="Remove the delayed jobs too.")
    ] = False,
    address: Address = None,
    as_json: Json = False,
) -> None:
    """Remove a queue's waiting jobs (and delayed ones with --delayed)."""
    with connected(address) as client:
        removed = client.drain(queue, include_delayed=delayed)
    _done(as_json, {"queue": queue, "removed": removed}, f"{escape(queue)}: {removed} removed")


@queue_app.command("clean")
def clean(
    queue: Queue,
    state: Annotated[
        str,
        typer.Option(
            "--state",
            "-s",
            help="completed, failed, cancelled, waiting or delayed.",
            show_default=True,
        ),
    ] = "completed",
    grace: Annotated[
        str, typer.Option(help="Only jobs in the state for at least this long (1h, 7d).")
    ] = "0",
    limit: Annotated[int, typer.Option(help="At most this many jobs.", min=1, max=100_000)] = 1000,
    address: Address = None,
    as_json: Json = False,
) -> None:
    """Remove jobs of one state older than a grace period, up to a limit."""
    try:
        chosen = JobState(state.strip().lower())
        grace_seconds = opts.duration(grace, "--grace")
    except ValueError as exc:
        usage(str(exc) if isinstance(exc, opts.OptionError) else f"--state: {state!r} is unknown")
    if chosen is JobState.ACTIVE:
        usage("--state: active jobs cannot be cleaned (cancel them)")
    with connected(address) as client:
        ids = client.clean(queue, chosen, grace_seconds, limit)
    _done(
        as_json,
        {"queue": queue, "state": chosen, "removed": len(ids), "job_ids": ids},
        f"{escape(queue)}: {len(ids)} {chosen.value} jobs removed",
    )


@queue_app.command("obliterate")
def obliterate(
    queue: Queue,
    force: Annotated[
        bool, typer.Option("--force", help="Even while jobs are active (their workers fail).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    address: Address = None,
    as_json: Json = False,
) -> None:
    """Remove everything of a queue: jobs, logs, events, settings and schedules."""
    if not yes:
        try:
            confirmed = typer.confirm(f"Remove every job and setting of queue {queue!r}?")
        except typer.Abort:
            confirmed = False
        if not confirmed:
            usage("not confirmed (pass --yes to obliterate without asking)")
    with connected(address) as client:
        removed = client.obliterate(queue, force=force)
    _done(
        as_json,
        {"queue": queue, "removed": removed},
        f"{escape(queue)} obliterated: {removed} jobs removed",
    )


@queue_app.command("retry-failed")
def retry_failed(queue: Queue, address: Address = None, as_json: Json = False) -> None:
    """Move every failed job back to waiting, with fresh attempts."""
    with connected(address) as client:
        retried = client.retry_failed(queue)
    _done(as_json, {"queue": queue, "retried": retried}, f"{escape(queue)}: {retried} retried")


@queue_app.command("promote-delayed")
def promote_delayed(queue: Queue, address: Address = None, as_json: Json = False) -> None:
    """Make every delayed job waiting now."""
    with connected(address) as client:
        promoted = client.promote_delayed(queue)
    _done(as_json, {"queue": queue, "promoted": promoted}, f"{escape(queue)}: {promoted} promoted")


@queue_app.command("settings")
def settings(
    queue: Queue,
    rate_limit_: Annotated[
        str | None,
        typer.Option(
            "--rate-limit", help="Jobs per window: 10/1s, 100/m; off for none.", show_default=False
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Most active jobs across all workers; 0 for no limit.", min=0),
    ] = None,
    group_rate_limit: Annotated[
        str | None,
        typer.Option(help="Jobs of one group per window: 5/1s; off for none.", show_default=False),
    ] = None,
    max_stalled: Annotated[
        int | None,
        typer.Option(help="Stalls a job survives; 0 for the broker default.", min=0),
    ] = None,
    address: Address = None,
    as_json: Json = False,
) -> None:
    """Show a queue's settings, or change those given (the others stay as they are)."""
    try:
        limit = rate_limit(rate_limit_, "--rate-limit")
        group_limit = rate_limit(group_rate_limit, "--group-rate-limit")
    except opts.OptionError as exc:
        usage(str(exc))
    changing = any(v is not None for v in (rate_limit_, concurrency, group_rate_limit, max_stalled))
    with connected(address) as client:
        current = _current_settings(client, queue)
        if changing:
            current = client.update_settings(
                queue,
                rate_limit=limit if rate_limit_ is not None else current.rate_limit,
                concurrency=current.concurrency if concurrency is None else concurrency,
                group_rate_limit=(
                    group_limit if group_rate_limit is not None else current.group_rate_limit
                ),
                max_stalled=current.max_stalled if max_stalled is None else max_stalled,
            )
    if as_json:
        out.print_json({"queue": queue, "settings": current})
    else:
        out.stdout().print(_grid([("queue", escape(queue)), *_settings_rows(current)]))


def _current_settings(client: Client, queue: str) -> QueueSettings:
    return client.queue(queue).settings


def events(
    queue: Queue,
    after: Annotated[
        str,
        typer.Option(
            "--after", help="Start after this event id (default: from now on).", show_default=False
        ),
    ] = "",
    address: Address = None,
    as_json: Json = False,
) -> None:
    """Print a queue's events live (Ctrl-C to stop), resuming across broker restarts."""
    with connected(address) as client:
        console = out.stdout()
        for event in client.watch_events(queue, after_event_id=after):
            if as_json:
                out.print_json({"event": event})
                continue
            job = f"{escape(event.job_id)} " if event.job_id else ""
            count = f" ({event.count} jobs)" if event.count else ""
            line = out.event_line(event)
            console.print(f"{job}{line}{count}")


def workers(queue: Queue, address: Address = None, as_json: Json = False) -> None:
    """List the workers seen leasing from a queue in the last minute."""
    with connected(address) as client:
        found = client.workers(queue)
    if as_json:
        out.print_json({"workers": found})
        return
    table = Table(title=f"{queue}: {len(found)} workers", title_justify="left")
    for column in ("worker", "host", "active jobs", "queues", "last seen"):
        table.add_column(column, overflow="fold")
    for worker in found:
        table.add_row(
            escape(worker.worker_id),
            escape(worker.host or "-"),
            str(worker.active_jobs),
            escape(", ".join(worker.queues)),
            out.when(worker.last_seen),
        )
    out.stdout().print(table)


def _schedule_rows(schedule: Schedule) -> list[tuple[str, str]]:
    every = f"every {schedule.every:g}s" if isinstance(schedule.every, float) else ""
    when = f"cron {schedule.cron} ({schedule.timezone or 'UTC'})" if schedule.cron else every
    return [
        ("schedule", f"{escape(schedule.queue)} / {escape(schedule.key)}"),
        ("job", escape(schedule.name)),
        ("when", escape(when)),
        ("data", escape(out.short(schedule.data, 200)) or "-"),
        ("runs", f"{schedule.runs}" + (f" of {schedule.limit}" if schedule.limit else "")),
        ("next run", out.when(schedule.next_run_at)),
    ]


@schedules_app.command("list")
def schedules_list(queue: Queue, address: Address = None, as_json: Json = False) -> None:
    """List a queue's repeatable jobs, by next run time."""
    with connected(address) as client:
        found = client.schedules(queue)
    if as_json:
        out.print_json({"schedules": found})
        return
    table = Table(title=f"{queue}: {len(found)} schedules", title_justify="left")
    for column in ("key", "job", "when", "runs", "next run"):
        table.add_column(column, overflow="fold")
    for schedule in found:
        rows = dict(_schedule_rows(schedule))
        table.add_row(
            escape(schedule.key), rows["job"], rows["when"], rows["runs"], rows["next run"]
        )
    out.stdout().print(table)


@schedules_app.command("get")
def schedules_get(queue: Queue, key: Key, address: Address = None, as_json: Json = False) -> None:
    """Show one repeatable job."""
    with connected(address) as client:
        found = client.schedule(queue, key)
    if as_json:
        out.print_json(found)
    else:
        out.stdout().print(_grid(_schedule_rows(found)))


def _moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise opts.OptionError(f"{option}: {value!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@schedules_app.command("add")
def schedules_add(
    queue: Queue,
    key: Key,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The name of each job.")],
    cron: Annotated[
        str | None,
        typer.Option(help='Cron expression: "0 3 * * *" (6 fields: seconds first).'),
    ] = None,
    every: Annotated[
        str | None, typer.Option(help="Or add a job every: 30s, 5m, 1h ...", show_default=False)
    ] = None,
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone of --cron (default UTC).")] = "",
    data: Data = None,
    limit: Annotated[int, typer.Option(help="Stop after this many jobs; 0: no limit.", min=0)] = 0,
    start_at: Annotated[
        str | None, typer.Option(help="No job before (ISO 8601; UTC if no offset).")
    ] = None,
    end_at: Annotated[
        str | None, typer.Option(help="No job after (ISO 8601; UTC if no offset).")
    ] = None,
    priority: Priority = 0,
    attempts: Attempts = 1,
    backoff: BackoffSpec = None,
    timeout: AttemptTimeout = None,
    remove_on_complete: RemoveOnComplete = "false",
    remove_on_fail: RemoveOnFail = "false",
    address: Address = None,
    as_json: Json = False,
) -> None:
    """Add (or replace) a repeatable job: --cron or --every."""
    if (cron is None) == (every is None):
        usage("give exactly one of --cron and --every")
    try:
        value = opts.json_data(data)
        options = opts.job_options(
            priority=priority,
            attempts=attempts,
            **opts.attempt_fields(
                backoff_spec=backoff,
                timeout=timeout,
                remove_on_complete=remove_on_complete,
                remove_on_fail=remove_on_fail,
            ),
        )
        interval = opts.maybe_duration(every, "--every")
        start, end = _moment(start_at, "--start-at"), _moment(end_at, "--end-at")
    except opts.OptionError as exc:
        usage(str(exc))
    with connected(address) as client:
        stored = client.upsert_schedule(
            queue,
            key,
            name,
            value,
            cron=cron,
            every=interval,
            timezone=tz,
            limit=limit,
            start_at=start,
            end_at=end,
            options=options,
        )
    if as_json:
        out.print_json(stored)
    else:
        out.stdout().print(_grid(_schedule_rows(stored)))


@schedules_app.command("remove")
def schedules_remove(
    queue: Queue, key: Key, address: Address = None, as_json: Json = False
) -> None:
    """Remove a repeatable job (the jobs it already added stay)."""
    with connected(address) as client:
        client.remove_schedule(queue, key)
    _done(
        as_json,
        {"queue": queue, "key": key, "removed": True},
        f"schedule {escape(queue)}/{escape(key)} removed",
    )
